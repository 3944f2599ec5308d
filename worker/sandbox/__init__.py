"""A PracticePanther simulator: the swagger's API, OAuth 2, seed data, churn and faults.

Everything in ppw is developed, tested, demoed and benchmarked against it; see docs/sandbox.md.
"""

from worker.sandbox.config import SandboxConfig
from worker.sandbox.server import SandboxServer, create_app
from worker.sandbox.testing import obtain_tokens

__all__ = ["SandboxConfig", "SandboxServer", "create_app", "obtain_tokens"]
