"""``mcpctl render``: a template agent for services that read files (docs/render.md).

What confd and consul-template do for Consul and etcd: a YAML agent config
lists Jinja2 templates (``config``); the agent watches what they read
(``agent``), renders them (``template``) and installs each result atomically,
checked, then reloads the service (``install``).
"""

from __future__ import annotations

from mcpctl.render.agent import Agent
from mcpctl.render.config import AgentConfig, RenderConfigError, load_config, parse_config
from mcpctl.render.install import Outcome, Status
from mcpctl.render.template import Data, RenderError

__all__ = [
    "Agent",
    "AgentConfig",
    "Data",
    "Outcome",
    "RenderConfigError",
    "RenderError",
    "Status",
    "load_config",
    "parse_config",
]
