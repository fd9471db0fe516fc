"""Messages people read: Slack Block Kit, email (plain text + HTML) and the webhook body.

Every renderer takes the same `NotificationContent`, so a message says the same
thing on every channel. Golden files in tests/alerting/golden pin the output.
"""

from __future__ import annotations

import html
from typing import Any, Final

from alerting.model import Example, NotificationContent

SEVERITY_EMOJI: Final = {"critical": ":rotating_light:", "warning": ":warning:", "info": ":information_source:"}
SEVERITY_COLOUR: Final = {"critical": "#b42318", "warning": "#b54708", "info": "#175cd3"}
_HEADER_MAX: Final = 150  # Slack rejects longer header text
_SECTION_MAX: Final = 3000


def _slack_escape(text: str) -> str:
    # Slack mrkdwn treats these three as control characters; everything else is literal.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _window(content: NotificationContent) -> str:
    first = content.first_at.strftime("%Y-%m-%d %H:%M:%S")
    last = content.last_at.strftime("%H:%M:%S")
    return f"{first} – {last} UTC" if content.first_at != content.last_at else f"{first} UTC"


def _entity(content: NotificationContent) -> str:
    labels = content.group_labels
    if labels.get("entity_type") and labels.get("entity_id"):
        return f"{labels['entity_type']} {labels['entity_id']}"
    return ", ".join(f"{k}={v}" for k, v in sorted(labels.items()) if v and k != "tenant_id") or "—"


def _amount(example: Example) -> str:
    summary = example.summary
    if summary.amount is None:
        return ""
    return f"{summary.amount} {summary.currency or ''}".strip()


def _counts(counts: dict[str, int]) -> list[str]:
    return [f"{name}: {count:,}" for name, count in counts.items()]


def _facts(content: NotificationContent) -> list[tuple[str, str]]:
    new = f"{content.alert_count:,}"
    if content.active_count != content.alert_count:
        new += f" ({content.active_count:,} active in this group)"
    return [
        ("Tenant", content.tenant_id or content.group_labels.get("tenant_id") or "all"),
        ("About", _entity(content)),
        ("Alerts" if content.kind == "firing" else "Still active", new),
        ("Window", _window(content)),
    ]


def slack_blocks(content: NotificationContent) -> dict[str, Any]:
    """A Block Kit message (`text` is the notification fallback)."""
    emoji = SEVERITY_EMOJI[content.severity.value]
    facts = [{"type": "mrkdwn", "text": f"*{name}*\n{_slack_escape(value)}"} for name, value in _facts(content)]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": content.title[:_HEADER_MAX], "emoji": True}},
        {"type": "section", "fields": facts},
        {
            "type": "section",
            "fields": [
                {
                    "type": "mrkdwn",
                    "text": "*By detector*\n"
                    + "\n".join(f"• {_slack_escape(line)}" for line in _counts(content.counts_by_detector)),
                },
                {
                    "type": "mrkdwn",
                    "text": "*By severity*\n"
                    + "\n".join(f"• {_slack_escape(line)}" for line in _counts(content.counts_by_severity)),
                },
            ],
        },
        {"type": "divider"},
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*Top {len(content.examples)} by score*"}},
    ]
    for example in content.examples:
        summary = example.summary
        ident = _slack_escape(summary.transaction_id or summary.title)
        ident = f"<{example.link}|{ident}>" if example.link else f"`{ident}`"
        parts = [f"*{example.score:.1f}*", example.severity.value, ident, _slack_escape(summary.entity)]
        amount = _amount(example)
        line2 = " — ".join(p for p in (_slack_escape(amount), _slack_escape(summary.reason)) if p)
        text = " · ".join(p for p in parts if p) + (f"\n{line2}" if line2 else "")
        if summary.detector:
            text += f"\n_{_slack_escape(summary.detector)}_"
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text[:_SECTION_MAX]}})
    if content.link:
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "Open in Vigil"},
                        "url": content.link,
                        "style": "danger" if content.severity.value == "critical" else "primary",
                    }
                ],
            }
        )
    blocks.append(
        {
            "type": "context",
            "elements": [
                {"type": "mrkdwn", "text": f"{emoji} Silence it: `{_slack_escape(content.silence_command)}`"},
                {"type": "mrkdwn", "text": f"Group `{_slack_escape(content.group_key)}`"},
            ],
        }
    )
    return {"text": content.title, "blocks": blocks}


def email_subject(content: NotificationContent) -> str:
    return content.title


def email_text(content: NotificationContent) -> str:
    """The plain-text part: readable in any client and in a terminal."""
    lines = [content.title, "=" * min(len(content.title), 78), ""]
    lines += [f"{name + ':':<14}{value}" for name, value in _facts(content)]
    lines += ["", "By detector:"] + [f"  - {line}" for line in _counts(content.counts_by_detector)]
    lines += ["By severity:"] + [f"  - {line}" for line in _counts(content.counts_by_severity)]
    lines += ["", f"Top {len(content.examples)} by score:"]
    for example in content.examples:
        summary = example.summary
        head = f"  {example.score:5.1f}  {example.severity.value:<8} {summary.transaction_id or summary.title}"
        lines.append(head + (f"  ({summary.entity})" if summary.entity else ""))
        detail = " — ".join(p for p in (_amount(example), summary.reason) if p)
        if detail:
            lines.append(f"         {detail}")
        if summary.detector:
            lines.append(f"         {summary.detector}")
        if example.link:
            lines.append(f"         {example.link}")
    if content.link:
        lines += ["", f"Open in Vigil: {content.link}"]
    lines += ["", f"Silence it: {content.silence_command}", f"Group: {content.group_key}", ""]
    return "\n".join(lines)


def email_html(content: NotificationContent) -> str:
    """The HTML part: inline styles only, since mail clients drop style sheets."""
    e = html.escape
    colour = SEVERITY_COLOUR[content.severity.value]
    facts = "".join(
        f'<tr><th align="left" style="padding:2px 12px 2px 0;color:#475467">{e(name)}</th><td>{e(value)}</td></tr>'
        for name, value in _facts(content)
    )
    detectors = "".join(f"<li>{e(line)}</li>" for line in _counts(content.counts_by_detector))
    severities = "".join(f"<li>{e(line)}</li>" for line in _counts(content.counts_by_severity))
    rows = []
    for example in content.examples:
        summary = example.summary
        ident = e(summary.transaction_id or summary.title)
        if example.link:
            ident = f'<a href="{e(example.link)}">{ident}</a>'
        rows.append(
            "<tr>"
            f'<td style="padding:4px 8px"><b>{example.score:.1f}</b></td>'
            f'<td style="padding:4px 8px">{e(example.severity.value)}</td>'
            f'<td style="padding:4px 8px">{ident}</td>'
            f'<td style="padding:4px 8px">{e(summary.entity)}</td>'
            f'<td style="padding:4px 8px">{e(_amount(example))}</td>'
            f'<td style="padding:4px 8px">{e(summary.reason)}<br>'
            f'<span style="color:#667085">{e(summary.detector)}</span></td>'
            "</tr>"
        )
    button = (
        f'<p><a href="{e(content.link)}" style="background:{colour};color:#ffffff;padding:8px 14px;'
        'border-radius:4px;text-decoration:none">Open in Vigil</a></p>'
        if content.link
        else ""
    )
    head_cells = "".join(
        f'<th align="left" style="padding:4px 8px">{name}</th>'
        for name in ("Score", "Severity", "Transaction", "Entity", "Amount", "Reason")
    )
    return (
        "<!DOCTYPE html>\n"
        '<html><body style="font-family:Arial,Helvetica,sans-serif;color:#101828">\n'
        f'<h2 style="border-left:6px solid {colour};padding-left:10px">{e(content.title)}</h2>\n'
        f"<table>{facts}</table>\n"
        f"<h3>By detector</h3><ul>{detectors}</ul>\n"
        f"<h3>By severity</h3><ul>{severities}</ul>\n"
        f"<h3>Top {len(content.examples)} by score</h3>\n"
        '<table style="border-collapse:collapse" border="1" cellspacing="0">'
        f"<tr>{head_cells}</tr>{''.join(rows)}</table>\n"
        f"{button}\n"
        f'<p style="color:#667085;font-size:12px">Silence it: <code>{e(content.silence_command)}</code>'
        f"<br>Group: <code>{e(content.group_key)}</code></p>\n"
        "</body></html>\n"
    )


def webhook_body(content: NotificationContent) -> dict[str, Any]:
    """The generic webhook's JSON document (versioned, so receivers can evolve)."""
    return {"version": 1, "notification": content.model_dump(mode="json")}
