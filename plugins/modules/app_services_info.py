#!/usr/bin/python
# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: app_services_info
short_description: Whether an application's services run and are healthy
description:
  - Reads each service of O(services) (the typed list of M(runbook.recovery.app_services)) as it runs now. For a
    docker compose service or a container, its containers, whether each runs, and Docker's health status when the
    container has a health check; for a systemd unit, whether it is active.
  - RV(healthy) is true when every service has something running and no running container is unhealthy or still
    starting; RV(problems) says what is not. Nothing is changed.
  - A procedure's check after a restart or a recovery reads this, and fails on the problems.
version_added: 0.2.0
author: runbook.recovery maintainers (@runbook-recovery)
requirements:
  - the Python package C(docker) (the Docker SDK) on the host, for compose and container services
  - systemd on the host, for systemd units
attributes:
  check_mode:
    support: full
    description: Reads only, in check mode too.
  diff_mode:
    support: none
    description: Nothing changes.
options:
  services:
    description:
      - The application services. Each is a unit name or a dict with C(type) (V(systemd), V(compose),
        V(container)) and C(name), or C(project) and C(service) for compose.
    type: list
    elements: raw
    required: true
  only:
    description:
      - Read the services this names only (a compose service by its service name or C(project/service), a
        container or unit by its name); empty reads all of O(services).
    type: str
    default: ""
  docker_host:
    description: The Docker daemon's API, as in C(DOCKER_HOST).
    type: str
    default: unix:///var/run/docker.sock
"""

EXAMPLES = r"""
- name: Read the chat backend's containers
  runbook.recovery.app_services_info:
    services: [{type: compose, project: chat, service: backend}]
  register: backend

- name: Require every running container to be healthy
  ansible.builtin.assert:
    that: backend.healthy
    fail_msg: "{{ backend.problems | join('; ') }}"
"""

RETURN = r"""
healthy:
  description: Every service has something running, and no running container is unhealthy or still starting.
  returned: always
  type: bool
  sample: true
problems:
  description: What is not healthy, one line each.
  returned: always
  type: list
  elements: str
  sample: ["container chat_backend_2 (compose:chat/backend) is unhealthy"]
services:
  description: Each service as it runs now.
  returned: always
  type: list
  elements: dict
  sample: [{"service": "compose:chat/backend", "containers": [
            {"name": "chat_backend_1", "running": true, "health": "healthy"}]},
           {"service": "systemd:chat-worker.service", "active": true}]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.recovery.plugins.module_utils.app_services import AppServices, parse_services, select
from ansible_collections.runbook.recovery.plugins.module_utils.common import RunbookError


def main():
    module = AnsibleModule(argument_spec=dict(
        services=dict(type="list", elements="raw", required=True),
        only=dict(type="str", default=""),
        docker_host=dict(type="str", default="unix:///var/run/docker.sock"),
    ), supports_check_mode=True)
    p = module.params
    try:
        app = AppServices(select(parse_services(p["services"]), p["only"]), "", p["docker_host"])
        services, problems = app.health()
    except RunbookError as exc:
        module.fail_json(msg=str(exc), **exc.details)
    module.exit_json(changed=False, healthy=not problems, problems=problems, services=services)


if __name__ == "__main__":
    main()
