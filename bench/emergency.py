"""Benchmark: emergency shutdown and resume of 200 Lambda functions and 20 API stages, against the
runbook's way (one `aws` CLI call per resource in a shell loop), in the same emulator, in the same run.

  shutdown  playbooks/emergency-shutdown.yml (plan, then record + stop every resource on a thread pool)
            vs `for f in ...; do aws lambda put-function-concurrency ... 0; done` plus one
            `aws apigatewayv2 update-stage` per stage. Target: ours >= 25x faster and under 6 s.
  resume    playbooks/emergency-resume.yml (reads the records on the resources) vs the same loop writing
            values known in advance (the runbook keeps no record, so someone must have written them down).
Ours runs --repeat times, interleaved with the loops (--loop-repeat times); medians are compared.
Also the AWS calls each of our runs made per resource (the emulator's request log), against the least a recorded
change can take: 3 (read the value, tag the record, write), plus the listings that find the resources.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT))

from sandbox.sandbox import _lambda_zip  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def emulator_env(port: int) -> dict:
    """What a benchmark's playbooks, boto3 and AWS CLI run with: the emulator on `port`, this checkout's Ansible."""
    return {**os.environ, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1", "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_HOME": str(ROOT / ".ansible"), "ANSIBLE_COLLECTIONS_PATH": str(ROOT / ".ansible/collections")}


def start_emulator(port: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, str(ROOT / "sandbox/aws_emulator.py"), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        time.sleep(0.1)
    raise RuntimeError("the emulator did not start")


def build(env: dict, functions: int, stages: int) -> tuple[dict, dict]:
    session = boto3.session.Session(region_name=env["AWS_DEFAULT_REGION"])
    iam, lam, apigw = (session.client(s, endpoint_url=env["AWS_ENDPOINT_URL"]) for s in ("iam", "lambda",
                                                                                        "apigatewayv2"))
    role = iam.create_role(RoleName="bench", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    code = _lambda_zip()
    reserved = {f"bench-fn-{i:03d}": (None if i % 4 == 0 else i % 50 + 1) for i in range(functions)}

    def create(item):
        name, value = item
        lam.create_function(FunctionName=name, Runtime="python3.12", Role=role, Handler="index.handler",
                            Code={"ZipFile": code})
        if value is not None:
            lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=value)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(create, reserved.items()))
    apis = {}
    for i in range(stages):
        api = apigw.create_api(Name=f"bench-api-{i:02d}", ProtocolType="WEBSOCKET",
                               RouteSelectionExpression="$request.body.action")["ApiId"]
        apigw.create_stage(ApiId=api, StageName="prod", DefaultRouteSettings={
            "ThrottlingBurstLimit": 100 + i, "ThrottlingRateLimit": 200.0 + i})
        apis[api] = (100 + i, 200.0 + i)
    return reserved, apis


def state(env: dict, names: list[str], apis: dict) -> tuple[dict, dict]:
    session = boto3.session.Session(region_name=env["AWS_DEFAULT_REGION"])
    lam, apigw = (session.client(s, endpoint_url=env["AWS_ENDPOINT_URL"]) for s in ("lambda", "apigatewayv2"))
    with ThreadPoolExecutor(8) as pool:
        functions = dict(zip(names, pool.map(
            lambda n: lam.get_function_concurrency(FunctionName=n).get("ReservedConcurrentExecutions"), names),
            strict=True))
    stages = {}
    for api in apis:
        settings = apigw.get_stage(ApiId=api, StageName="prod")["DefaultRouteSettings"]
        stages[api] = (settings.get("ThrottlingBurstLimit"), settings.get("ThrottlingRateLimit"))
    return functions, stages


def calls(log: Path) -> dict[str, int]:
    """The requests the emulator logged since the log was last emptied, by operation; the log is emptied."""
    counted: dict[str, int] = {}
    if log.exists():
        for line in log.read_text().splitlines():
            counted[line] = counted.get(line, 0) + 1
        log.write_text("")
    return counted


def timed(command: list[str], env: dict) -> float:
    started = time.perf_counter()
    proc = subprocess.run(command, env=env, capture_output=True, text=True, cwd=ROOT)
    elapsed = time.perf_counter() - started
    if proc.returncode:
        raise RuntimeError(f"{command[:3]} failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return elapsed


def loop_script(reserved: dict, apis: dict, stop: bool) -> str:
    aws = shlex.quote(str(BIN / "aws"))
    lines = ["set -e"]
    for name, value in reserved.items():
        if stop:
            lines.append(f"{aws} lambda put-function-concurrency --function-name {name} "
                         "--reserved-concurrent-executions 0 > /dev/null")
        elif value is None:
            lines.append(f"{aws} lambda delete-function-concurrency --function-name {name}")
        else:
            lines.append(f"{aws} lambda put-function-concurrency --function-name {name} "
                         f"--reserved-concurrent-executions {value} > /dev/null")
    for api, (burst, rate) in apis.items():
        burst, rate = (0, 0.0) if stop else (burst, rate)
        lines.append(f"{aws} apigatewayv2 update-stage --api-id {api} --stage-name prod --default-route-settings "
                     f"ThrottlingBurstLimit={burst},ThrottlingRateLimit={rate} > /dev/null")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--functions", type=int, default=200)
    parser.add_argument("--stages", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3, help="runs of our shutdown and resume")
    parser.add_argument("--loop-repeat", type=int, default=1, help="runs of the CLI loops (minutes each)")
    args = parser.parse_args()

    base = Path(tempfile.mkdtemp(prefix="rr-bench-emergency-"))
    port = free_port()
    env = emulator_env(port)
    request_log = base / "requests.log"
    os.environ.update(env)  # boto3 here, the CLI loops and the playbooks all read the same environment
    os.environ["RUNBOOK_EMULATOR_REQUEST_LOG"] = str(request_log)  # the emulator only
    emulator = start_emulator(port)
    del os.environ["RUNBOOK_EMULATOR_REQUEST_LOG"]
    try:
        reserved, apis = build(env, args.functions, args.stages)
        original = state(env, list(reserved), apis)
        inventory = base / "inventory.yml"
        inventory.write_text(yaml.safe_dump({"all": {"children": {"aws": {"hosts": {"bench": {
            "ansible_connection": "local", "ansible_python_interpreter": sys.executable,
            "runbook_audit_log": str(base / "audit.jsonl"),
            "emergency_scopes": {"bench": {"lambda": {"prefixes": ["bench-fn-"]},
                                           "api_stages": [{"api": api, "stage": "prod"} for api in apis]}}}}}}}}))
        playbook = [str(BIN / "ansible-playbook"), "-i", str(inventory), "-e", "confirm=true",
                    "-e", "shutdown_scope=bench"]
        stop_loop, resume_loop = base / "stop.sh", base / "resume.sh"
        stop_loop.write_text(loop_script(reserved, apis, stop=True))
        resume_loop.write_text(loop_script(reserved, apis, stop=False))
        all_stopped = ({name: 0 for name in reserved}, {api: (0, 0.0) for api in apis})
        print(f"{args.functions} Lambda functions, {args.stages} API stages in the emulator\n", flush=True)

        ours_stop, ours_resume, loop_stop, loop_resume = [], [], [], []
        made: dict[str, dict[str, int]] = {}
        for run in range(max(args.repeat, args.loop_repeat)):
            if run < args.repeat:
                calls(request_log)
                ours_stop.append(timed([*playbook, "playbooks/emergency-shutdown.yml"], env))
                made["shutdown"] = calls(request_log)
                assert state(env, list(reserved), apis) == all_stopped, "our shutdown left something running"
                calls(request_log)
                ours_resume.append(timed([*playbook, "playbooks/emergency-resume.yml"], env))
                made["resume"] = calls(request_log)
                assert state(env, list(reserved), apis) == original, "our resume did not restore every value"
                print(f"ours: shutdown {ours_stop[-1]:.2f}s, resume {ours_resume[-1]:.2f}s", flush=True)
            if run < args.loop_repeat:
                loop_stop.append(timed(["bash", str(stop_loop)], env))
                assert state(env, list(reserved), apis) == all_stopped
                loop_resume.append(timed(["bash", str(resume_loop)], env))
                assert state(env, list(reserved), apis) == original
                print(f"CLI loop: shutdown {loop_stop[-1]:.2f}s, resume {loop_resume[-1]:.2f}s", flush=True)

        resources = args.functions + args.stages
        for run_name, counted in made.items():
            total = sum(counted.values())
            top = ", ".join(f"{op} {n}" for op, n in sorted(counted.items(), key=lambda item: -item[1])[:6])
            print(f"AWS calls of our {run_name}: {total} for {resources} resources = {total / resources:.2f} per "
                  f"resource (least possible: 3, read + tag + write); {top}")
        stop_ratio = statistics.median(loop_stop) / statistics.median(ours_stop)
        resume_ratio = statistics.median(loop_resume) / statistics.median(ours_resume)
        print(f"\nmedians ({args.repeat} of ours, {args.loop_repeat} of the loops)")
        print(f"shutdown: CLI loop {statistics.median(loop_stop):.1f}s / ours {statistics.median(ours_stop):.2f}s = "
              f"{stop_ratio:.1f}x faster (target >= 25x and under 6 s: "
              f"{'met' if stop_ratio >= 25 and statistics.median(ours_stop) < 6 else 'NOT met'})")
        print(f"resume:   CLI loop {statistics.median(loop_resume):.1f}s / "
              f"ours {statistics.median(ours_resume):.2f}s = "
              f"{resume_ratio:.1f}x faster")
        print(json.dumps({"shutdown_ratio": round(stop_ratio, 1), "resume_ratio": round(resume_ratio, 1),
                          "ours_shutdown_s": round(statistics.median(ours_stop), 2),
                          "ours_resume_s": round(statistics.median(ours_resume), 2),
                          "calls_per_resource": {run_name: round(sum(counted.values()) / resources, 2)
                                                 for run_name, counted in made.items()}}))
        return 0
    finally:
        emulator.terminate()
        emulator.wait(timeout=10)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
