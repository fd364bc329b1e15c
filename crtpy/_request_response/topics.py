"""MQTT topic names and topic filters: validity and matching."""
from __future__ import annotations


def valid_topic(topic: str) -> bool:
    """A topic that a message may be published to: non-empty, no wildcards."""
    if not isinstance(topic, str) or not topic or len(topic.encode("utf-8")) > 65535:
        return False
    return "+" not in topic and "#" not in topic and "\0" not in topic


def valid_filter(topic_filter: str) -> bool:
    """A topic filter that may be subscribed to (``+`` and a final ``#`` as whole levels)."""
    if not isinstance(topic_filter, str) or not topic_filter or "\0" in topic_filter:
        return False
    if len(topic_filter.encode("utf-8")) > 65535:
        return False
    levels = topic_filter.split("/")
    last = len(levels) - 1
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != last):
            return False
        if "+" in level and level != "+":
            return False
    return True


def matches(topic_filter: str, topic: str) -> bool:
    """Whether ``topic`` is matched by ``topic_filter``."""
    if topic_filter == topic:
        return True
    if "+" not in topic_filter and "#" not in topic_filter:
        return False
    f_levels = topic_filter.split("/")
    t_levels = topic.split("/")
    if t_levels[0].startswith("$") and f_levels[0] in ("+", "#"):
        return False  # wildcards at the first level never match $-topics
    for i, f in enumerate(f_levels):
        if f == "#":
            return True
        if i >= len(t_levels):
            return False
        if f != "+" and f != t_levels[i]:
            return False
    return len(f_levels) == len(t_levels)
