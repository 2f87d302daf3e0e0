#!/usr/bin/python
# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: app_services
short_description: Stop an application with a record of what ran, start exactly that back, or restart it one container at a time
description:
  - "The application is one typed list of services, O(services). Each entry is a systemd unit
    (C({type: systemd, name})), a docker compose service (C({type: compose, project, service})) or a single
    container (C({type: container, name})). A plain string is a systemd unit, as in older inventories."
  - A compose service is found by the labels C(com.docker.compose.project) and C(com.docker.compose.service),
    which compose v1 and v2 both set, so no compose file is needed. Docker is driven through its API.
  - O(state=stopped) first writes O(record) on the host, holding the containers (and units) that were running,
    then stops them. A record left by an earlier stop is kept, since it holds what ran before that stop.
  - O(state=started) starts exactly what O(record) says was running, at the same count, and removes the record.
    Without a record, systemd units are started and docker services are left as they are.
  - O(state=restarted) restarts one container (or unit) at a time and waits for it to be healthy before the
    next, with Docker's health status when the container has a health check, and O(health_url) when given.
    The first one that does not become healthy stops the run; the failure names it.
  - Every entry is checked before anything is touched, and a compose service or container that matches nothing
    is refused.
version_added: 0.2.0
author: runbook.recovery maintainers (@runbook-recovery)
requirements:
  - the Python package C(docker) (the Docker SDK) on the host, for compose and container services
  - systemd on the host, for systemd units
attributes:
  check_mode:
    support: full
    description: Reads what runs and reports what would be stopped, started or restarted; changes nothing.
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
    description: V(stopped), V(started) (from the record), or V(restarted) (rolling).
    type: str
    choices: [stopped, started, restarted]
    required: true
  only:
    description:
      - Act on the services this names only (a compose service by its service name or C(project/service), a
        container or unit by its name); empty acts on all of O(services). Naming nothing fails before any change.
    type: str
    default: ""
  record:
    description:
      - File on the host holding what was running at the stop (JSON, mode 0600). Give each procedure its own.
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
    description: For O(state=restarted), an HTTP URL that must answer 2xx/3xx after each restart; empty skips it.
    type: str
    default: ""
  health_timeout:
    description: For O(state=restarted), seconds each container or unit gets to become healthy.
    type: int
    default: 60
  settle:
    description: For O(state=restarted), seconds a container must keep running (and healthy) before the next.
    type: float
    default: 2
  actor:
    description: Written into the record (who stopped it, for the person who finds it).
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
"""

RETURN = r"""
actions:
  description: What was (or in check mode would be) done, in order.
  returned: always
  type: list
  elements: str
  sample: ["stopped container chat_backend_1 (compose:chat/backend)"]
services:
  description: Each service, with what ran before a stop or what was started.
  returned: always
  type: list
  elements: dict
record:
  description: The record written by the stop, or read by the start (null when there was none).
  returned: always
  type: dict
restarted:
  description: On a failed rolling restart, what was restarted and healthy before the unhealthy one.
  returned: failure
  type: list
  elements: str
unhealthy:
  description: On a failed rolling restart, the container or unit that did not become healthy.
  returned: failure
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.recovery.plugins.module_utils.app_services import AppServices, parse_services, select
from ansible_collections.runbook.recovery.plugins.module_utils.common import RunbookError, require_non_negative


def main():
    module = AnsibleModule(argument_spec=dict(
        services=dict(type="list", elements="raw", required=True),
        state=dict(type="str", choices=["stopped", "started", "restarted"], required=True),
        record=dict(type="path", required=True),
        docker_host=dict(type="str", default="unix:///var/run/docker.sock"),
        stop_timeout=dict(type="int", default=10),
        health_url=dict(type="str", default=""),
        health_timeout=dict(type="int", default=60),
        settle=dict(type="float", default=2),
        actor=dict(type="str", default=""),
        only=dict(type="str", default=""),
    ), supports_check_mode=True)
    p = module.params
    record = None
    try:
        require_non_negative(p, "stop_timeout", "health_timeout", "settle")
        app = AppServices(select(parse_services(p["services"]), p["only"]), p["record"], p["docker_host"], p["stop_timeout"],
                          module.check_mode)
        if p["state"] == "stopped":
            outcome, record = app.stop(by=p["actor"])
        elif p["state"] == "started":
            outcome, record = app.start()
        else:
            outcome = app.restart(p["health_url"], p["health_timeout"], p["settle"])
    except RunbookError as exc:
        module.fail_json(msg=str(exc), **exc.details)
    module.exit_json(changed=outcome.changed, actions=outcome.actions, services=outcome.services, record=record)


if __name__ == "__main__":
    main()
