"""The plugin manager: one per app, never global.

Built-in hook implementations (``DEFAULT_PLUGINS``) register like any plugin.
Adapters, built-in or third-party, load through the ``fhirhub`` entry-point
group; ``HUB_LOAD_PLUGINS=hl7v2,cda`` restricts which load, and
``HUB_TRACE_PLUGINS=1`` logs every hook call.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
from importlib.metadata import entry_points

import pluggy

from hub import hookspecs

log = logging.getLogger("hub.plugins")

ENTRY_POINT_GROUP = "fhirhub"

DEFAULT_PLUGINS = ("hub.default_outcomes", "hub.default_validation")


@dataclasses.dataclass(frozen=True)
class Adapter:
    """What a plugin's adapter is, for sites and ``hub site new`` (``register_adapters``).

    A site's manifest binds it with ``adapter: NAME``; its payloads are in
    ``format`` unless the manifest says otherwise (``format:``), and that format
    is what ``map_inbound`` sees in ``message.format``.
    """

    name: str  # the manifest's ``adapter`` value
    format: str  # the payload format its map_inbound accepts
    input_extension: str = "txt"  # of a conformance case's input file (``input.hl7``)
    # One example case for a scaffolded site: (case folder, file name, text); ``{name}``
    # in the text is replaced by the site's name. ``None``: the engineer adds the first case.
    example: tuple[str, str, str] | None = None
    # Manifest lines routing messages to the site (e.g. the HL7 ``match:`` block), with
    # every placeholder marked FILL-IN, and the README step explaining them.
    match: str = ""
    match_step: str = ""


def adapters(pm: pluggy.PluginManager) -> dict[str, Adapter]:
    """The adapters of the registered plugins, by name (the built-in ``fhir`` included)."""
    found = {"fhir": Adapter("fhir", "fhir", "json")}
    for listed in pm.hook.register_adapters():
        for adapter in listed or ():
            found[adapter.name] = adapter
    return found


def adapter_format(pm: pluggy.PluginManager, name: str) -> str | None:
    """The payload format of the adapter ``name``, or ``None`` when no plugin describes it."""
    adapter = adapters(pm).get(name)
    return adapter.format if adapter is not None else None


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
    from hub.version import __version__

    pm = pluggy.PluginManager("fhirhub")
    pm.add_hookspecs(hookspecs)
    # Plugin name -> version of the distribution it came from (``hub plugins``).
    pm.fhirhub_versions = {}
    for name in DEFAULT_PLUGINS:
        pm.register(importlib.import_module(name), name=name)
        pm.fhirhub_versions[name] = __version__
    if load_entry_points:
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if only is not None and ep.name not in only:
                continue
            if pm.get_plugin(ep.name) is None:
                pm.register(ep.load(), name=ep.name)
                pm.fhirhub_versions[ep.name] = ep.dist.version if ep.dist else None
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
    """Name, version, adapters and hooks of every registered plugin (``hub plugins``).

    The version is that of the distribution the plugin was installed with; plugins
    registered directly (tests' ``PLUGINS``) have none.
    """
    versions = getattr(pm, "fhirhub_versions", {})
    out = []
    for name, plugin in sorted(pm.list_name_plugin(), key=lambda p: p[0]):
        hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
        described = getattr(plugin, "register_adapters", None)
        out.append(
            {
                "name": name,
                "version": versions.get(name),
                "adapters": sorted(a.name for a in described() or ()) if described else [],
                "hooks": hooks,
            }
        )
    return out
