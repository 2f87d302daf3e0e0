-- The demo chat database, shaped like the system in the source runbooks (002: AI Consultant Live Chat).
-- Deterministic content so a test can compare table checksums before and after a recovery.
CREATE TABLE users (
    id          bigserial PRIMARY KEY,
    email       text NOT NULL UNIQUE,
    role        text NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'admin')),
    is_active   boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE chat_sessions (
    id          bigserial PRIMARY KEY,
    user_id     bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    status      text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'closed', 'deleted')),
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);

CREATE TABLE chat_messages (
    id          bigserial PRIMARY KEY,
    session_id  bigint NOT NULL REFERENCES chat_sessions (id) ON DELETE CASCADE,
    sender      text NOT NULL CHECK (sender IN ('user', 'assistant', 'agent')),
    content     text NOT NULL,
    created_at  timestamptz NOT NULL
);

CREATE INDEX idx_chat_messages_session_id ON chat_messages (session_id);
CREATE INDEX idx_chat_messages_created_at ON chat_messages (created_at);
CREATE INDEX idx_chat_sessions_user_id ON chat_sessions (user_id);

INSERT INTO users (email, role, is_active, created_at)
SELECT format('user%s@example.com', i),
       CASE WHEN i % 50 = 0 THEN 'admin' ELSE 'user' END,
       i % 17 <> 0,
       timestamptz '2026-01-01 00:00:00+00' + i * interval '37 minutes'
FROM generate_series(1, 500) AS i;

INSERT INTO chat_sessions (user_id, status, created_at, updated_at)
SELECT 1 + (i * 7) % 500,
       (ARRAY['active', 'closed', 'deleted'])[1 + i % 3],
       timestamptz '2026-02-01 00:00:00+00' + i * interval '11 minutes',
       timestamptz '2026-02-01 00:00:00+00' + i * interval '11 minutes' + interval '25 minutes'
FROM generate_series(1, 2000) AS i;

INSERT INTO chat_messages (session_id, sender, content, created_at)
SELECT 1 + (i * 13) % 2000,
       (ARRAY['user', 'assistant', 'agent'])[1 + i % 3],
       'message ' || i || ': ' || md5(i::text),
       timestamptz '2026-02-01 00:00:00+00' + i * interval '3 minutes'
FROM generate_series(1, 8000) AS i;

ANALYZE;
