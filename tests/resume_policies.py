"""Policy files the resume tests share."""

from __future__ import annotations

from tests.notify_receivers import ROUTING_KEY, Receivers

CHECKLIST = """
[[resume.checklist]]
id = "root-cause"
text = "Root cause identified"
answer = "required"

[[resume.checklist]]
id = "risk"
text = "Risk re-assessed"
answer = "required"
"""
"""Two items that need an answer; tests add the rest."""


def notify_toml(receivers: Receivers, *, deployers: bool = False) -> str:
    """``[notify]`` paging on-call through PagerDuty at ``receivers`` (and ACME Bank over Teams)."""
    text = f"""
[notify]
system = "Credit scoring"
delivery = {{ first_delay = "100ms", max_delay = "200ms", timeout = "10s" }}

[notify.groups.on-call]
kind = "on-call"
timeframe = "immediate"
channels = [{{ type = "pagerduty", routing_key = "{ROUTING_KEY}", url = "{receivers.url}/v2/enqueue" }}]
"""
    if deployers:
        text += f"""
[notify.groups.deployers]
kind = "deployers"
timeframe = "immediate"

[notify.deployers.acme]
name = "ACME Bank"
channels = [{{ type = "teams", webhook_url = "{receivers.url}/teams/acme?sig=S" }}]
"""
    return text
