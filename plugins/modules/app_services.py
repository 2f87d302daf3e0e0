#!/usr/bin/python
# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: app_services
short_description: Stop an application with a record of what ran, start exactly that back, restart it one container at a time, or scale a compose service
description:
  - "The application is one typed list of services, O(services). Each entry is a systemd unit
    (C({type: systemd, name})), a docker compose service (C({type: compose, project, service})) or a single
    container (C({type: container, name})). A plain string is a systemd unit, as in older inventories."
  - A compose service is found by the labels C(com.docker.compose.project) and C(com.docker.compose.service),
    which compose v1 and v2 both set, so no compose file is needed. Docker is driven through its API.
  - O(state=stopped) first writes O(record) on the host, holding the containers (and units) that were running,
    then stops them. A record left by an earlier stop is kept, since it holds what ran before that stop.
  - O(state=started) starts exactly what O(record) says was running, at the same count, and removes the record.
    Without a record, systemd units are started and docker services are left as they are. Each one started must
    become healthy (as for O(state=restarted)); the first that does not fails the run, naming it, and the record
    is kept.
  - O(state=restarted) restarts one container (or unit) at a time and waits for it to be healthy before the
    next, with Docker's health status when the container has a health check, and O(health_url) when given.
    The first one that does not become healthy stops the run; the failure names it.
  - O(state=scaled) gives each compose service O(replicas) running containers, as C(docker compose up --scale)
    does, with no compose file. Stopped containers count and are started first; new ones are cloned from an
    existing container of the service (its image, command, environment, labels with the next
    C(com.docker.compose.container-number), health check, mounts, networks, restart policy) and named as compose
    names them (C(project_service_N), or C(project-service-N) when the service's containers are named so); a
    scale-down stops and removes the highest-numbered ones (their volumes are kept). At 0 the lowest-numbered
    container is kept, stopped, so there is one to clone later. Each started or new container must become healthy
    (as for O(state=restarted)).
  - Before its first change O(state=scaled) writes O(record), holding the containers each service had and which
    ran; a record left by an earlier scaling is kept. O(state=unscaled) brings every service in O(record) back to
    exactly those containers (the ones the scaling made are removed, the ones it removed are cloned again under
    their names, each in its recorded running state), then removes the record; without a record it does nothing.
  - Every entry is checked before anything is touched, and a compose service or container that matches nothing
    is refused; so are a negative O(replicas), a service whose containers publish a fixed host port (a new one
    could not start), and one with a container_name of its own (compose cannot scale it either).
version_added: 0.2.0
author: runbook.recovery maintainers (@runbook-recovery)
requirements:
  - the Python package C(docker) (the Docker SDK) on the host, for compose and container services
  - systemd on the host, for systemd units
attributes:
  check_mode:
    support: full
    description: Reads what runs and reports what would be stopped, started, restarted, created or removed; changes nothing.
  diff_mode:
    support: none
    description: The result lists each action.
options:
  services:
    description:
      - The application services. Each is a unit name or a dict with C(type) (V(systemd), V(compose),
        V(container)) and C(name), or C(project) and C(service) for compose.
    type: list
    elements: raw
    required: true
  state:
    description: >-
      V(stopped), V(started) (from the record), V(restarted) (rolling), V(scaled) (to O(replicas), compose
      services only), or V(unscaled) (back to what the record of the scaling holds).
    type: str
    choices: [stopped, started, restarted, scaled, unscaled]
    required: true
  replicas:
    description: For O(state=scaled), the number of running containers each compose service gets (0 or more).
    type: int
  only:
    description:
      - Act on the services this names only (a compose service by its service name or C(project/service), a
        container or unit by its name); empty acts on all of O(services). Naming nothing fails before any change.
    type: str
    default: ""
  record:
    description:
      - File on the host holding what was running at the stop, or the containers there were before a scaling
        (JSON, mode 0600). Give each procedure its own.
    type: path
    required: true
  docker_host:
    description: The Docker daemon's API, as in C(DOCKER_HOST).
    type: str
    default: unix:///var/run/docker.sock
  stop_timeout:
    description: Seconds a container gets to stop before it is killed.
    type: int
    default: 10
  health_url:
    description: >-
      For O(state=started), O(state=restarted), O(state=scaled) and O(state=unscaled), an HTTP URL that must answer
      2xx/3xx after each restart or start; empty skips it.
    type: str
    default: ""
  health_timeout:
    description: Seconds each restarted, started or new container (or unit) gets to become healthy.
    type: int
    default: 60
  settle:
    description: Seconds a restarted, started or new container must keep running (and healthy) before the next.
    type: float
    default: 2
  actor:
    description: Written into the record (who stopped or scaled it, for the person who finds it).
    type: str
    default: ""
"""

EXAMPLES = r"""
- name: Stop the chat backend before the restore
  runbook.recovery.app_services:
    services:
      - {type: compose, project: chat, service: backend}
      - chat-worker.service
    state: stopped
    record: /var/lib/runbook-recovery/app/recover-db-chat.json

- name: Roll-restart it, checking its health endpoint between containers
  runbook.recovery.app_services:
    services: [{type: compose, project: chat, service: backend}]
    state: restarted
    record: /var/lib/runbook-recovery/app/restart.json
    health_url: http://127.0.0.1:8080/health

- name: Run three chat backend containers (docker compose up -d --scale backend=3, without the compose file)
  runbook.recovery.app_services:
    services: [{type: compose, project: chat, service: backend}]
    state: scaled
    replicas: 3
    record: /var/lib/runbook-recovery/scale/compose-chat-backend.json

- name: Put back the containers there were before that scaling
  runbook.recovery.app_services:
    services: [{type: compose, project: chat, service: backend}]
    state: unscaled
    record: /var/lib/runbook-recovery/scale/compose-chat-backend.json
"""

RETURN = r"""
actions:
  description: What was (or in check mode would be) done, in order.
  returned: always
  type: list
  elements: str
  sample: ["stopped container chat_backend_1 (compose:chat/backend)"]
services:
  description: >-
    Each service, with what ran before a stop or what was started; for a scaling, its containers before and after,
    whether it changed, and the plan as a line.
  returned: always
  type: list
  elements: dict
  sample: [{"service": "compose:chat/backend", "changed": true,
            "before": {"containers": 1, "running": ["chat_backend_1"], "stopped": []},
            "after": {"containers": 3, "running": ["chat_backend_1", "chat_backend_2", "chat_backend_3"], "stopped": []},
            "line": "scale     compose service chat/backend: 1 container(s), 1 running -> 3 container(s), 3 running
                     (create chat_backend_2, chat_backend_3)",
            "actions": ["created and started container chat_backend_2 (compose:chat/backend)"]}]
record:
  description: The record written by the stop or scaling, or read by the start or undo (null when there was none).
  returned: always
  type: dict
  sample: {"version": 1, "taken_at": "2025-01-01T03:00:00Z", "by": "ops", "services": {"compose:chat/backend": {
           "type": "compose", "project": "chat", "service": "backend",
           "containers": [{"name": "chat_backend_1", "number": 1, "running": true, "id": "4f1c..."}]}}}
restarted:
  description: On a failed rolling restart, what was restarted and healthy before the unhealthy one.
  returned: failure
  type: list
  elements: str
unhealthy:
  description: On a failed rolling restart or scaling, the container or unit that did not become healthy.
  returned: failure
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.recovery.plugins.module_utils.app_services import (
    AppServices,
    docker_failure,
    parse_services,
    select,
)
from ansible_collections.runbook.recovery.plugins.module_utils.common import require_non_negative
from ansible_collections.runbook.recovery.plugins.module_utils.outcome import reported


def main():
    module = AnsibleModule(argument_spec=dict(
        services=dict(type="list", elements="raw", required=True),
        state=dict(type="str", choices=["stopped", "started", "restarted", "scaled", "unscaled"], required=True),
        replicas=dict(type="int"),
        record=dict(type="path", required=True),
        docker_host=dict(type="str", default="unix:///var/run/docker.sock"),
        stop_timeout=dict(type="int", default=10),
        health_url=dict(type="str", default=""),
        health_timeout=dict(type="int", default=60),
        settle=dict(type="float", default=2),
        actor=dict(type="str", default=""),
        only=dict(type="str", default=""),
    ), supports_check_mode=True, required_if=[("state", "scaled", ["replicas"])])
    p = module.params
    health = (p["health_url"], p["health_timeout"], p["settle"])
    with reported(module, docker_failure):
        require_non_negative(p, "stop_timeout", "health_timeout", "settle", "replicas")
        app = AppServices(select(parse_services(p["services"]), p["only"]), p["record"], p["docker_host"], p["stop_timeout"],
                          module.check_mode)
        outcome, record = {
            "stopped": lambda: app.stop(by=p["actor"]),
            "started": lambda: app.start(*health),
            "restarted": lambda: (app.restart(*health), None),
            "scaled": lambda: app.scale(p["replicas"], p["actor"], *health),
            "unscaled": lambda: app.unscale(*health),
        }[p["state"]]()
    module.exit_json(changed=outcome.changed, actions=outcome.actions, services=outcome.services, record=record)


if __name__ == "__main__":
    main()
