"""The plugin manager: one per app, never global.

Built-in hook implementations (``DEFAULT_PLUGINS``) register like any plugin.
Adapters, built-in or third-party, load through the ``fhirhub`` entry-point
group; ``HUB_LOAD_PLUGINS=hl7v2,cda`` restricts which load, and
``HUB_TRACE_PLUGINS=1`` logs every hook call.
"""

from __future__ import annotations

import importlib
import logging
from importlib.metadata import entry_points

import pluggy

from hub import hookspecs

log = logging.getLogger("hub.plugins")

ENTRY_POINT_GROUP = "fhirhub"

DEFAULT_PLUGINS = ("hub.default_outcomes", "hub.default_validation")


def get_plugin_manager(
    load_entry_points: bool = True,
    only: list[str] | None = None,
    trace: bool = False,
    extra: list | None = None,
) -> pluggy.PluginManager:
    """A new plugin manager with the hub's own hookimpls and, by default, the adapters.

    :param load_entry_points: load the ``fhirhub`` entry-point group.
    :param only: names of entry points to load (``HUB_LOAD_PLUGINS``); ``None`` loads all.
    :param trace: log each hook call and result (``HUB_TRACE_PLUGINS``).
    :param extra: plugin objects or module names to register as well (tests use this).
    """
    pm = pluggy.PluginManager("fhirhub")
    pm.add_hookspecs(hookspecs)
    for name in DEFAULT_PLUGINS:
        pm.register(importlib.import_module(name), name=name)
    if load_entry_points:
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if only is not None and ep.name not in only:
                continue
            if pm.get_plugin(ep.name) is None:
                pm.register(ep.load(), name=ep.name)
    for plugin in extra or ():
        if isinstance(plugin, str):
            plugin = importlib.import_module(plugin)
        if not pm.is_registered(plugin):
            pm.register(plugin)
    pm.check_pending()
    if trace:
        pm.trace.root.setwriter(log.info)
        pm.enable_tracing()
    return pm


def plugin_info(pm: pluggy.PluginManager) -> list[dict]:
    """Name, version and hooks of every registered plugin (``hub plugins``)."""
    dists = {id(plugin): dist for plugin, dist in pm.list_plugin_distinfo()}
    out = []
    for name, plugin in sorted(pm.list_name_plugin(), key=lambda p: p[0]):
        dist = dists.get(id(plugin))
        hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
        out.append(
            {
                "name": name,
                "version": dist.version if dist else None,
                "hooks": hooks,
            }
        )
    return out
