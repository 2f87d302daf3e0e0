# Copyright: runbook.recovery contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  login_host:
    description: Redis host.
    type: str
    default: 127.0.0.1
  login_port:
    description: Redis port.
    type: int
    default: 6379
  login_user:
    description: ACL user name.
    type: str
  login_password:
    description: Password. Never logged.
    type: str
  tls:
    description: Connect with TLS.
    type: bool
    default: false
  connect_timeout:
    description: Seconds to wait for the server.
    type: float
    default: 5.0
requirements:
  - redis (Python library) on the managed host
"""
