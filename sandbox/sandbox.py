"""Start, stop, seed and describe the local sandbox: PostgreSQL, Redis, the AWS API emulator and the application tier.

    python sandbox/sandbox.py up       # idempotent: starts what is not running, seeds what is missing,
                                       # backs up chat, archives WAL (a first base backup)
    python sandbox/sandbox.py down     # stops everything; no process is left behind
    python sandbox/sandbox.py status   # what runs where
    python sandbox/sandbox.py env      # shell exports for the AWS emulator (eval "$(... env)")
    python sandbox/sandbox.py aws-up   # only the AWS emulator, seeded (molecule's prepare uses it)
    python sandbox/sandbox.py aws-down
    python sandbox/sandbox.py up --fleet 3x40   # also a fleet: 3 more servers, 40 small databases each, and
                                               # its inventory, inventories/fleet (make sandbox-up FLEET=3x40)
    python sandbox/sandbox.py fleet-up 3x40 | fleet-down    # only the fleet

Everything lives under .sandbox/ in the checkout (ignored by git), Barman's cloud tools too (.sandbox/barman-cloud,
where the server's OS user runs them), and the application tier's Docker daemon (.sandbox/docker,
sandbox/app_tier.py: the compose project `chat`, backend and frontend). Ports come from
inventories/local/group_vars/all/sandbox.yml, the same file the playbooks read; the fleet's servers listen from 55440
up (RUNBOOK_SANDBOX_FLEET_PORT), under .sandbox/fleet/, and RUNBOOK_FLEET_INVENTORY moves its inventory elsewhere.
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sandbox import app_tier  # noqa: E402
from sandbox.pgcluster import PgCluster, process_alive, wait_gone  # noqa: E402

SANDBOX = Path(os.environ.get("RUNBOOK_SANDBOX_DIR", ROOT / ".sandbox"))
SETTINGS = yaml.safe_load((ROOT / "inventories/local/group_vars/all/sandbox.yml").read_text())
# RUNBOOK_SANDBOX_PG_PORT=... and friends override a port, so a second sandbox can run beside the first.
SETTINGS.update({key: int(os.environ[f"RUNBOOK_{key.upper()}"]) for key in SETTINGS
                 if key.endswith("_port") and os.environ.get(f"RUNBOOK_{key.upper()}")})
DEMO_DATABASE = "chat"
DOCKER = SANDBOX / "docker"
FLEET = SANDBOX / "fleet"
FLEET_PORT = int(os.environ.get("RUNBOOK_SANDBOX_FLEET_PORT") or 55440)
FLEET_INVENTORY = Path(os.environ.get("RUNBOOK_FLEET_INVENTORY", ROOT / "inventories" / "fleet" / "hosts.yml"))
FLEET_TEMPLATE = "fleet_template"
# Runs at once on one server (its Airflow pool) and the network zone of each server (its Celery queue): the last
# server is alone in zone-b, which only worker-2 of make airflow-cluster reaches.
FLEET_POOL_SLOTS = 2

WAF_WEB_ACL = "SakeSensei-WebACL"
SECURITY_GROUP = "chat-alb"
USER_POOL = "SakeSensei-Users"
WAF_IP_SETS = {"SakeSensei-BlockedIPs": ["192.0.2.10/32", "192.0.2.11/32", "198.18.0.0/24"],
               "SakeSensei-AllowedIPs": ["203.0.113.0/24"]}
LAMBDA_FUNCTIONS = {
    # name: reserved concurrency (None = unreserved)
    "ChatbotLambdaStack-WebSocketHandler": 7,
    "ChatbotLambdaStack-ConnectHandler": None,
    "ChatbotLambdaStack-DisconnectHandler": None,
    "sake-sensei-recommendation": 5,
}
DYNAMODB_TABLES = ["chatbot-sessions", "chatbot-connections", "sake-sensei-users"]
ECS_CLUSTER, ECS_SERVICE = "chat-cluster", "chat-backend"
# Deploy histories for rollback-deploy.yml: the service runs the last of its releases (revision 1 retired, INACTIVE);
# the function's alias points at its last published version.
ECS_RELEASES = ["1.0.0", "1.1.0", "1.2.0"]
LAMBDA_RELEASES = {"sake-sensei-recommendation": ("live", ["1", "2"])}
REST_API = "chatbot-admin"
# A Terraform state in S3 whose apply died holding its DynamoDB lock 3 hours ago (terraform-unlock.yml removes it).
TERRAFORM_STATE = {"bucket": "acme-tfstate", "key": "network/terraform.tfstate", "table": "terraform-locks"}
# The bucket every logical backup is copied to (backup-db.yml), which fetch-backup.yml reads back.
BACKUP_BUCKET = yaml.safe_load((ROOT / "inventories/local/group_vars/postgres.yml").read_text())["pg_backup_s3_bucket"]


def aws_env() -> dict[str, str]:
    return {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{SETTINGS['sandbox_aws_port']}",
        "AWS_ACCESS_KEY_ID": "sandbox",
        "AWS_SECRET_ACCESS_KEY": "sandbox",
        "AWS_DEFAULT_REGION": SETTINGS["sandbox_aws_region"],
        "AWS_REGION": SETTINGS["sandbox_aws_region"],
    }


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.3)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(port):
            return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def read_pid(pidfile: Path) -> int | None:
    try:
        pid = int(pidfile.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return pid if process_alive(pid) else None


def stop_pid(pidfile: Path, timeout: float = 15) -> bool:
    pid = read_pid(pidfile)
    if pid is None:
        pidfile.unlink(missing_ok=True)
        return False
    try:
        os.killpg(pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGTERM)
    if not wait_gone(pid, timeout):
        os.kill(pid, signal.SIGKILL)
        wait_gone(pid, 5)
    pidfile.unlink(missing_ok=True)
    return True


# -- PostgreSQL ------------------------------------------------------------------------------
def postgres() -> PgCluster:
    return PgCluster(SANDBOX / "pg", SETTINGS["sandbox_pg_port"])


def seed_postgres(cluster: PgCluster) -> bool:
    import psycopg

    with psycopg.connect(**cluster.conninfo(), autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DEMO_DATABASE,)).fetchone():
            return False
        conn.execute(f"CREATE DATABASE {DEMO_DATABASE}")
    with psycopg.connect(**cluster.conninfo(DEMO_DATABASE), autocommit=True) as conn:
        conn.execute((ROOT / "sandbox/seed_chat.sql").read_text())
    return True


def play(playbook: str, what: str) -> str:
    """Run one of the playbooks a person would run against this sandbox; its output, or exit naming `what`."""
    ansible_playbook = Path(sys.executable).with_name("ansible-playbook")
    # This sandbox's directory and ports (a second sandbox may run beside the first); nothing secret.
    where = json.dumps({"sandbox_dir": str(SANDBOX), **SETTINGS})
    result = subprocess.run([str(ansible_playbook), f"playbooks/{playbook}", "-e", where], cwd=ROOT,
                            capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        raise SystemExit(f"{what} failed:\n{result.stdout[-3000:]}{result.stderr[-2000:]}")
    return result.stdout


def first_backup() -> bool:
    """A verified logical backup of the demo database, so the health sweep (which watches backups) starts
    healthy; taken by the playbook a person would run."""
    backups = SANDBOX / "backups" / DEMO_DATABASE
    if backups.is_dir() and any((p / "manifest.json").exists() for p in backups.iterdir()):
        return False
    play("backup-db.yml", f"the first backup of {DEMO_DATABASE}")
    return True


def archiving(cluster: PgCluster) -> bool:
    """Continuous WAL archiving into the emulator's S3 and a first base backup, by setup-archiving.yml. The emulator
    keeps S3 in memory: after it restarts the bucket is gone, and the playbook creates it and takes a new first base
    backup. When the server archives without failing and the archive holds a base backup, the playbook (idempotent,
    but some 20 s) is not run."""
    if archiving_in_place(cluster):
        return False
    recap = play("setup-archiving.yml", "setting up WAL archiving")
    return re.search(r"\bchanged=[1-9]", recap) is not None


def wal_archive() -> dict:
    """The inventory's pg_archive (its destination and server_name are plain strings)."""
    return yaml.safe_load((ROOT / "inventories/local/group_vars/postgres.yml").read_text())["pg_archive"]


def archiving_in_place(cluster: PgCluster) -> bool:
    import boto3
    import psycopg

    archive = wal_archive()
    bucket, _, prefix = archive["destination"].removeprefix("s3://").partition("/")
    with psycopg.connect(**cluster.conninfo()) as conn:
        mode, failing = conn.execute(
            "SELECT current_setting('archive_mode'), last_failed_time > coalesce(last_archived_time, '-infinity') "
            "FROM pg_stat_archiver").fetchone()
    if mode != "on" or failing:
        return False
    s3 = boto3.session.Session(region_name=SETTINGS["sandbox_aws_region"]).client("s3")
    try:
        listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/{archive['server_name']}/base/", MaxKeys=1)
    except s3.exceptions.NoSuchBucket:
        return False
    return listed.get("KeyCount", 0) > 0


# -- a fleet: more servers, many small databases ----------------------------------------------------------------
def fleet_shape(text: str) -> tuple[int, int]:
    """"3x40" -> (3 servers, 40 databases each)."""
    servers, _, databases = text.lower().partition("x")
    try:
        shape = int(servers), int(databases)
    except ValueError:
        shape = (0, 0)
    if min(shape) < 1 or shape[1] > 999:
        raise SystemExit(f"FLEET={text!r}: give SERVERSxDATABASES, such as 3x40 (at least 1x1, at most 999 databases "
                         "per server)")
    return shape


def fleet_servers() -> list[PgCluster]:
    return [PgCluster(path, FLEET_PORT + int(path.name[2:]) - 1)
            for path in sorted(FLEET.glob("pg[0-9]*"), key=lambda p: int(p.name[2:]))]


def fleet_database(server: int, number: int) -> str:
    return f"s{server}_db{number:02d}"


def fleet_up(servers: int, per_server: int) -> dict[str, bool]:
    """The sandbox's fleet: `servers` PostgreSQL servers under .sandbox/fleet/ from FLEET_PORT up, `per_server`
    databases each, and the inventory that names them (inventories/fleet). Idempotent."""
    clusters = [fleet_server(FLEET / f"pg{number}", FLEET_PORT + number - 1) for number in range(1, servers + 1)]
    report = {"fleet servers started": False, "fleet databases created": False}
    for number, cluster in enumerate(clusters, start=1):
        report["fleet servers started"] |= cluster.start()
        report["fleet databases created"] |= fleet_databases(cluster, number, per_server)
    text = fleet_inventory(clusters, per_server, FLEET, header=(
        f"Written by sandbox/sandbox.py (make sandbox-up FLEET={servers}x{per_server}): the sandbox's fleet of "
        f"{servers} PostgreSQL servers, {per_server} databases each."))
    report["fleet inventory written"] = write_if_changed(FLEET_INVENTORY, text)
    return report


def fleet_server(base: Path, port: int) -> PgCluster:
    """One server of a fleet: small, and fast rather than durable (a sandbox or a test)."""
    return PgCluster(base, port, settings={"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off",
                                           "shared_buffers": "'32MB'", "max_connections": "60"})


def private_fleet(servers: int, per_server: int, ports, prefix: str) -> list[PgCluster]:
    """A fleet of its own for a test or a benchmark: each server in a temp dir (`prefix`N-...) on a port of
    `ports()`, started, with its databases. Its caller destroys them; if one fails to start, those already started
    are destroyed here."""
    import tempfile

    started: list[PgCluster] = []
    try:
        for number in range(1, servers + 1):
            server = fleet_server(Path(tempfile.mkdtemp(prefix=f"{prefix}{number}-")), ports())
            started.append(server)
            server.start()
            fleet_databases(server, number, per_server)
    except BaseException:
        for server in started:
            server.destroy()
        raise
    return started


def fleet_databases(cluster: PgCluster, number: int, per_server: int) -> bool:
    """Server `number` holds databases s<number>_db01.. (copies of a template holding the chat tables)."""
    import psycopg

    created = False
    with psycopg.connect(**cluster.conninfo(), autocommit=True) as conn:
        existing = {row[0] for row in conn.execute("SELECT datname FROM pg_database")}
        if FLEET_TEMPLATE not in existing:
            conn.execute(f"CREATE DATABASE {FLEET_TEMPLATE}")
            with psycopg.connect(**cluster.conninfo(FLEET_TEMPLATE), autocommit=True) as seed:
                seed.execute((ROOT / "sandbox/seed_chat.sql").read_text())
        for index in range(1, per_server + 1):
            if fleet_database(number, index) not in existing:
                conn.execute(f"CREATE DATABASE {fleet_database(number, index)} TEMPLATE {FLEET_TEMPLATE} "
                             "STRATEGY FILE_COPY")
                created = True
    return created


def fleet_inventory(clusters: list[PgCluster], per_server: int, workdir: Path, header: str,
                    **host_vars) -> str:
    """The inventory of a fleet: each server a host of the `postgres` group with its connection (the password read
    from the server's own 0600 file at run time, never written here), databases and backup root under `workdir`,
    its Airflow pool size and the Celery queue of its zone (the last server alone in zone-b)."""
    hosts = {}
    for number, cluster in enumerate(clusters, start=1):
        hosts[f"fleet-pg{number}"] = {
            "pg_connection": {"login_host": "127.0.0.1", "login_port": cluster.port, "login_user": cluster.user,
                              "login_password": f"{{{{ lookup('ansible.builtin.file', '{cluster.password_file}') }}}}"},
            "pg_databases": [fleet_database(number, index) for index in range(1, per_server + 1)],
            "pg_backup_root": str(workdir / "backups" / f"fleet-pg{number}"),
            "airflow_queue": "zone-b" if number == len(clusters) > 1 else "zone-a",
            "airflow_pool_slots": FLEET_POOL_SLOTS,
            **host_vars,
        }
    document = {"all": {
        "vars": {"ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}",
                 "runbook_audit_log": str(workdir / "audit.jsonl"), "runbook_report_dir": str(workdir / "reports")},
        "children": {"postgres": {"hosts": hosts}}}}
    comment = (f"{header} Each server is a host with its own connection, databases and backup root, its Airflow "
               "pool size (airflow_pool_slots) and the Celery queue of its network zone (airflow_queue).")
    return "---\n" + "".join(f"# {line}\n" for line in textwrap.wrap(comment, 116)) + \
        yaml.safe_dump(document, sort_keys=False, width=120)


def write_if_changed(path: Path, text: str) -> bool:
    if path.exists() and path.read_text() == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return True


def fleet_down() -> list[str]:
    return [f"127.0.0.1:{cluster.port}" for cluster in fleet_servers() if cluster.stop()]


# -- Redis -----------------------------------------------------------------------------------
def redis_paths() -> tuple[Path, Path, Path]:
    base = SANDBOX / "redis"
    return base, base / "redis.conf", base / "redis.pid"


def start_redis() -> bool:
    base, conf, pidfile = redis_paths()
    if read_pid(pidfile):
        return False
    base.mkdir(parents=True, exist_ok=True)
    if not conf.exists():
        # A real config file, so CONFIG REWRITE (used by redis_config) has somewhere to write.
        conf.write_text(
            f"bind 127.0.0.1\nport {SETTINGS['sandbox_redis_port']}\ndaemonize yes\n"
            f"pidfile {pidfile}\ndir {base}\nlogfile {base / 'redis.log'}\n"
            'save ""\nappendonly no\nmaxmemory 64mb\nmaxmemory-policy noeviction\n')
    subprocess.run(["redis-server", str(conf)], check=True)
    wait_port(SETTINGS["sandbox_redis_port"])
    return True


# -- AWS emulator ----------------------------------------------------------------------------
def start_aws() -> bool:
    pidfile = SANDBOX / "aws" / "moto.pid"
    if read_pid(pidfile) and port_open(SETTINGS["sandbox_aws_port"]):
        return False
    pidfile.parent.mkdir(parents=True, exist_ok=True)
    log = open(pidfile.parent / "moto.log", "ab")
    proc = subprocess.Popen([sys.executable, str(ROOT / "sandbox/aws_emulator.py"),
                             "--port", str(SETTINGS["sandbox_aws_port"])],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    pidfile.write_text(f"{proc.pid}\n")
    wait_port(SETTINGS["sandbox_aws_port"])
    return True


def _lambda_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("index.py", "def handler(event, context):\n    return {'statusCode': 200}\n")
    return buffer.getvalue()


def create_rest_api(apigateway, name: str, stage: str) -> str:
    """A REST API with one mock GET method deployed to `stage` (no stage throttling set)."""
    api_id = apigateway.create_rest_api(name=name)["id"]
    root = apigateway.get_resources(restApiId=api_id)["items"][0]["id"]
    apigateway.put_method(restApiId=api_id, resourceId=root, httpMethod="GET", authorizationType="NONE")
    apigateway.put_integration(restApiId=api_id, resourceId=root, httpMethod="GET", type="MOCK")
    apigateway.create_deployment(restApiId=api_id, stageName=stage)
    return api_id


def seed_aws() -> bool:
    """Create the AWS resources later procedures act on. The emulator keeps state in memory, so
    this runs after every emulator start; it creates only what is missing."""
    import boto3

    session = boto3.session.Session(region_name=SETTINGS["sandbox_aws_region"])
    iam, lam = session.client("iam"), session.client("lambda")
    if any(f["FunctionName"] in LAMBDA_FUNCTIONS for f in lam.list_functions()["Functions"]):
        return False
    role = iam.create_role(RoleName="chatbot-lambda-role", AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                       "Action": "sts:AssumeRole"}]}))["Role"]["Arn"]
    code = _lambda_zip()
    logs = session.client("logs")
    for name, reserved in LAMBDA_FUNCTIONS.items():
        lam.create_function(FunctionName=name, Runtime="python3.12", Role=role, Handler="index.handler",
                            Code={"ZipFile": code}, MemorySize=256, Timeout=30,
                            # as runbook 000's "Enable Debug Logging" shows the function's variables
                            Environment={"Variables": {"SESSIONS_TABLE": "chatbot-sessions",
                                                       "CONVERSATIONS_TABLE": "chatbot-conversations",
                                                       "ANALYTICS_TABLE": "chatbot-analytics", "LOG_LEVEL": "INFO"}},
                            Tags={"app": "chatbot" if name.startswith("Chatbot") else "sake-sensei"})
        if reserved is not None:
            lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=reserved)
        logs.create_log_group(logGroupName=f"/aws/lambda/{name}")
    logs.create_log_group(logGroupName="/ecs/chat-backend")

    dynamodb = session.client("dynamodb")
    for table in DYNAMODB_TABLES:
        dynamodb.create_table(TableName=table, BillingMode="PROVISIONED",
                              AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                              KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                              ProvisionedThroughput={"ReadCapacityUnits": 5, "WriteCapacityUnits": 5})

    apigw = session.client("apigatewayv2")
    api = apigw.create_api(Name="chatbot-websocket", ProtocolType="WEBSOCKET",
                           RouteSelectionExpression="$request.body.action")
    apigw.create_stage(ApiId=api["ApiId"], StageName="prod", AutoDeploy=True,
                       DefaultRouteSettings={"ThrottlingBurstLimit": 500, "ThrottlingRateLimit": 1000.0})
    create_rest_api(session.client("apigateway"), REST_API, "prod")

    for name, (alias, releases) in LAMBDA_RELEASES.items():
        for release in releases:
            lam.update_function_configuration(FunctionName=name, Description=f"release {release}")
            version = lam.publish_version(FunctionName=name, Description=f"release {release}")["Version"]
        lam.create_alias(FunctionName=name, Name=alias, FunctionVersion=version)

    ecs = session.client("ecs")
    ecs.create_cluster(clusterName=ECS_CLUSTER)
    for release in ECS_RELEASES:
        ecs.register_task_definition(family=ECS_SERVICE, containerDefinitions=[
            {"name": "backend", "image": f"chat-backend:{release}", "memory": 512, "essential": True}])
    ecs.deregister_task_definition(taskDefinition=f"{ECS_SERVICE}:1")
    ecs.create_service(cluster=ECS_CLUSTER, serviceName=ECS_SERVICE, taskDefinition=ECS_SERVICE,
                       desiredCount=2)
    seed_stacks(session)
    seed_terraform_lock(session)
    session.client("s3").create_bucket(Bucket=BACKUP_BUCKET)
    waf = session.client("wafv2")  # runbook 001's block and allow lists, the block list already in use
    for name, addresses in WAF_IP_SETS.items():
        waf.create_ip_set(Name=name, Scope="REGIONAL", IPAddressVersion="IPV4", Addresses=addresses,
                          Description="runbook.recovery sandbox")
    seed_web_acl(waf)
    ec2 = session.client("ec2")  # runbook 001's load balancer, HTTP open to everyone
    vpc = ec2.describe_vpcs()["Vpcs"][0]["VpcId"]
    alb = ec2.create_security_group(GroupName=SECURITY_GROUP, Description="chat load balancer", VpcId=vpc)["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=alb, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    seed_user_pool(session.client("cognito-idp"))
    return True


def seed_user_pool(idp) -> None:
    """Runbook 001's user pool: a sign-up waiting for its confirmation, and a confirmed user with a verified email."""
    pool = idp.create_user_pool(PoolName=USER_POOL)["UserPool"]["Id"]
    client = idp.create_user_pool_client(UserPoolId=pool, ClientName="sakesensei-web")["UserPoolClient"]["ClientId"]
    idp.sign_up(ClientId=client, Username="newcomer", Password="Sandbox!Passw0rd",
                UserAttributes=[{"Name": "email", "Value": "newcomer@example.com"}])
    idp.admin_create_user(UserPoolId=pool, Username="kenji", MessageAction="SUPPRESS", UserAttributes=[
        {"Name": "email", "Value": "kenji@example.com"}, {"Name": "email_verified", "Value": "true"}])
    idp.admin_set_user_password(UserPoolId=pool, Username="kenji", Password="Sandbox!Passw0rd", Permanent=True)


def seed_web_acl(waf) -> None:
    """Runbook 001's web ACL: a rate limit, AWS's common rule set, and the block list."""
    blocked = next(s for s in waf.list_ip_sets(Scope="REGIONAL")["IPSets"] if s["Name"] == "SakeSensei-BlockedIPs")
    seen = {"SampledRequestsEnabled": True, "CloudWatchMetricsEnabled": True, "MetricName": "sakesensei"}

    def rule(name: str, priority: int, statement: dict, group: bool = False) -> dict:
        action = {"OverrideAction": {"None": {}}} if group else {"Action": {"Block": {}}}
        return {"Name": name, "Priority": priority, **action, "Statement": statement,
                "VisibilityConfig": {**seen, "MetricName": name}}

    waf.create_web_acl(Name=WAF_WEB_ACL, Scope="REGIONAL", DefaultAction={"Allow": {}}, VisibilityConfig=seen, Rules=[
        rule("RateLimitRule", 1, {"RateBasedStatement": {"Limit": 2000, "AggregateKeyType": "IP"}}),
        rule("AWSManagedRulesCommonRuleSet", 2, {"ManagedRuleGroupStatement": {
            "VendorName": "AWS", "Name": "AWSManagedRulesCommonRuleSet"}}, group=True),
        rule("BlockedIPs", 3, {"IPSetReferenceStatement": {"ARN": blocked["ARN"]}})])


def seed_terraform_lock(session) -> None:
    from sandbox.terraform_state import StateBackend, lock_info

    backend = StateBackend(session.client("s3"), session.client("dynamodb"), **TERRAFORM_STATE)
    backend.create()
    backend.lock_dynamodb(lock_info(backend.bucket, backend.key, datetime.timedelta(hours=3, minutes=12)))


def seed_stacks(session) -> None:
    """A bootstrapped CDK environment, a healthy stack, and a deploy that failed (its bucket name is taken) and
    rolled back to ROLLBACK_COMPLETE, as the BetterBank runbook describes: bootstrap-fixes.yml deletes that one."""
    cfn, s3 = session.client("cloudformation"), session.client("s3")
    cfn.create_stack(StackName="CDKToolkit", TemplateBody=json.dumps({"Resources": {"CdkBootstrapVersion": {
        "Type": "AWS::SSM::Parameter",
        "Properties": {"Name": "/cdk-bootstrap/hnb659fds/version", "Type": "String", "Value": "21"}}}}))
    cfn.create_stack(StackName="betterbank-shared", TemplateBody=json.dumps({"Resources": {"Queue": {
        "Type": "AWS::SQS::Queue", "Properties": {"QueueName": "betterbank-events"}}}}))
    s3.create_bucket(Bucket="betterbank-cards-artifacts")
    cfn.create_stack(StackName="betterbank-card-api-dev", TemplateBody=json.dumps({"Resources": {
        "Queue": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "betterbank-card-api-dev"}},
        "Artifacts": {"Type": "AWS::S3::Bucket", "Properties": {"BucketName": "betterbank-cards-artifacts"}}}}))


# -- commands --------------------------------------------------------------------------------
def up(fleet: str | None = None) -> None:
    shape = fleet_shape(fleet) if fleet else None
    SANDBOX.mkdir(parents=True, exist_ok=True)
    os.environ.update(aws_env())
    cluster = postgres()
    report = {
        "postgres started": cluster.start(),
        "chat database seeded": seed_postgres(cluster),
        "redis started": start_redis(),
        "aws emulator started": start_aws(),
    }
    report["aws resources seeded"] = seed_aws()
    report.update(app_tier.up(DOCKER, SETTINGS["sandbox_app_port"]))
    (SANDBOX / "backups").mkdir(mode=0o700, exist_ok=True)
    report["chat backed up"] = first_backup()
    report["wal archiving set up"] = archiving(cluster)
    if shape:
        report.update(fleet_up(*shape))
    for what, changed in report.items():
        print(f"  {what:<24} {'yes' if changed else 'already'}")
    status()


def down() -> None:
    stopped = {
        "aws emulator": stop_pid(SANDBOX / "aws" / "moto.pid"),
        "redis": stop_pid(redis_paths()[2]),
        "postgres": postgres().stop(),
        "docker (app)": app_tier.Daemon(DOCKER).stop(),
        "fleet": bool(fleet_down()),
    }
    for what, was_running in stopped.items():
        print(f"  {what:<14} {'stopped' if was_running else 'was not running'}")


def status() -> int:
    cluster = postgres()
    rows = [
        ("postgres", cluster.running(),
         f"127.0.0.1:{cluster.port} (socket {cluster.socket_dir}, data {cluster.data}, password file "
         f"{cluster.password_file})"),
        ("redis", read_pid(redis_paths()[2]) is not None,
         f"127.0.0.1:{SETTINGS['sandbox_redis_port']} (config {redis_paths()[1]})"),
        ("aws emulator", port_open(SETTINGS["sandbox_aws_port"]),
         f"http://127.0.0.1:{SETTINGS['sandbox_aws_port']} (AWS_ENDPOINT_URL; eval \"$(make -s sandbox-env)\")"),
    ]
    rows += app_tier.describe(DOCKER)
    for cluster in fleet_servers():
        rows.append((f"fleet {cluster.base.name}", cluster.running(),
                     f"127.0.0.1:{cluster.port} (data {cluster.data}; inventory {FLEET_INVENTORY})"))
    print(f"{'service':<14} {'state':<8} where")
    for name, running, where in rows:
        print(f"{name:<14} {'running' if running else 'stopped':<8} {where}")
    print(f"backups        {SANDBOX / 'backups'}")
    archive = wal_archive()
    print(f"wal archive    {archive['destination']}/{archive['server_name']} (in the AWS emulator)")
    return 0 if all(r[1] for r in rows) else 3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("command", choices=["up", "down", "status", "env", "aws-up", "aws-down", "fleet-up",
                                            "fleet-down"])
    parser.add_argument("shape", nargs="?", help="fleet-up: SERVERSxDATABASES, such as 3x40")
    parser.add_argument("--fleet", metavar="SERVERSxDATABASES", help="up: also a fleet of that shape")
    args = parser.parse_args()
    if args.command == "up":
        up(args.fleet)
    elif args.command == "fleet-up":
        for what, changed in fleet_up(*fleet_shape(args.shape or "3x40")).items():
            print(f"  {what:<24} {'yes' if changed else 'already'}")
    elif args.command == "fleet-down":
        print(f"  fleet stopped: {', '.join(fleet_down()) or 'nothing was running'}")
    elif args.command == "down":
        down()
    elif args.command == "aws-up":
        os.environ.update(aws_env())
        print(f"  aws emulator started     {'yes' if start_aws() else 'already'}")
        print(f"  aws resources seeded     {'yes' if seed_aws() else 'already'}")
    elif args.command == "aws-down":
        print(f"  aws emulator {'stopped' if stop_pid(SANDBOX / 'aws' / 'moto.pid') else 'was not running'}")
    elif args.command == "env":
        for key, value in aws_env().items():
            print(f"export {key}={value}")
    else:
        return status()
    return 0


if __name__ == "__main__":
    sys.exit(main())
