"""What the KubeRay backend knows of the cluster, kept from watches instead of asked for each time
(client-go's informers, small): list once, then watch from the list's resourceVersion; when the
server says 410 Gone (the resourceVersion was compacted away) or the watch breaks, list again.

One :class:`Informer` per kind the backend reads at every controller pass: its runs' RayJobs, their
worker pods, the Nodes, the DWS ProvisioningRequests, the cluster autoscaler's Events on pods
(:class:`ClusterCache`). Reads answer from
memory, so a pass costs no API call per running job. A watch ends after ``timeout_seconds`` (the
server's ``timeoutSeconds``) and is opened again from the last resourceVersion seen (bookmarks keep
it fresh while nothing changes), so a quiet cluster costs one request a kind per timeout.

Freshness: an object the backend itself creates or deletes is written into its informer at once
(:meth:`Informer.seen`, :meth:`Informer.forget`), so a run launched a moment ago is known before
its watch event arrives, and a stopped one is gone at once.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from typing import Any

from ...errors import BackendError
from .kube import Expired, KubeClient

log = logging.getLogger(__name__)

#: Names of deleted objects an informer remembers (so an absent run is known to be gone).
TOMBSTONES = 20_000


def _rv(obj: dict[str, Any]) -> int | None:
    """An object's resourceVersion as a number (etcd revisions are; None where it is not)."""
    raw = (obj.get("metadata") or {}).get("resourceVersion")
    try:
        return int(str(raw))
    except (TypeError, ValueError):
        return None


class Informer:
    """The objects of one kind (in one namespace, matching one label selector), by name.

    ``index``: a label whose value maps to the names carrying it (:meth:`by_label`), or a function
    of the object giving that value. ``field_selector``: as kube-apiserver's. ``on_change``:
    called (from the watch thread) after every change applied. Counters: ``lists`` (lists done,
    the first included), ``relists`` (lists after an expired or broken watch), ``watches``
    (watch requests opened), ``events``."""

    def __init__(self, kube: KubeClient, kind: str, namespace: str, label_selector: str | None = None, *,
                 index: str | Callable[[dict[str, Any]], str | None] | None = None, field_selector: str | None = None,
                 on_change: Callable[[], None] | None = None, timeout_seconds: int = 30, retry_s: float = 1.0):
        self.kube = kube
        self.kind = kind
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.index = index
        self.on_change = on_change
        self.timeout_seconds = timeout_seconds
        self.retry_s = retry_s
        self.synced = threading.Event()
        self.generation = 0             # bumped on every change (readers memoise derived views on it)
        self.resource_version = ""
        self.lists = self.relists = self.watches = self.events = 0
        self._objects: dict[str, dict[str, Any]] = {}
        self._by_label: dict[str, set[str]] = {}
        self._gone: dict[str, int | None] = {}    # deleted name -> resourceVersion of its deletion (oldest first, bounded)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._resp: Any = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ reads

    def get(self, name: str) -> dict[str, Any] | None:
        with self._lock:
            return self._objects.get(name)

    def gone(self, name: str) -> bool:
        """Whether ``name`` was seen deleted (and not created again since)."""
        with self._lock:
            return name in self._gone

    def items(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._objects.values())

    def by_label(self, value: str) -> list[dict[str, Any]]:
        """The objects whose ``index`` (label, or function) is ``value``."""
        with self._lock:
            return [self._objects[n] for n in self._by_label.get(value, ()) if n in self._objects]

    # ------------------------------------------------------------ writes

    def _label(self, obj: dict[str, Any]) -> str | None:
        if self.index is None:
            return None
        if callable(self.index):
            return self.index(obj)
        return ((obj.get("metadata") or {}).get("labels") or {}).get(self.index)

    def _put(self, obj: dict[str, Any]) -> bool:
        """Keep ``obj`` unless what is kept is newer, or the object was deleted after ``obj`` was
        written (an event or a list still on its way; a deletion of the backend's own, of unknown
        version, wins over everything but a new creation). Under the lock."""
        name = (obj.get("metadata") or {}).get("name", "")
        new = _rv(obj)
        if name in self._gone:
            deleted = self._gone[name]
            if deleted is None or new is None or new <= deleted:
                return False
        have = self._objects.get(name)
        if have is not None:
            old = _rv(have)
            if old is not None and new is not None and new < old:
                return False
            self._unindex(name, have)
        self._objects[name] = obj
        self._gone.pop(name, None)
        label = self._label(obj)
        if label is not None:
            self._by_label.setdefault(label, set()).add(name)
        return True

    def _unindex(self, name: str, obj: dict[str, Any]) -> None:
        label = self._label(obj)
        if label is not None:
            names = self._by_label.get(label)
            if names is not None:
                names.discard(name)
                if not names:
                    del self._by_label[label]

    def _drop(self, name: str, rv: int | None) -> None:
        """``name`` is deleted (at resourceVersion ``rv``; None: by the backend itself, just now)."""
        have = self._objects.pop(name, None)
        if have is not None:
            self._unindex(name, have)
        self._gone.pop(name, None)
        self._gone[name] = rv
        if len(self._gone) > TOMBSTONES:
            del self._gone[next(iter(self._gone))]

    def _changed(self) -> None:
        self.generation += 1
        if self.on_change is not None:
            self.on_change()

    def seen(self, obj: dict[str, Any], *, created: bool = False) -> None:
        """An object the backend just created (``created``: a new object of a deleted name is
        new) or read: known at once, before its watch event."""
        with self._lock:
            if created:
                self._gone.pop((obj.get("metadata") or {}).get("name", ""), None)
            changed = self._put(obj)
        if changed:
            self._changed()

    def forget(self, name: str) -> None:
        """An object the backend just deleted (or found missing)."""
        with self._lock:
            self._drop(name, None)
        self._changed()

    def apply(self, event_type: str, obj: dict[str, Any]) -> None:
        """One watch event."""
        self.events += 1
        if event_type == "BOOKMARK":
            rv = (obj.get("metadata") or {}).get("resourceVersion")
            if rv:
                self.resource_version = str(rv)
            return
        with self._lock:
            if event_type == "DELETED":
                self._drop((obj.get("metadata") or {}).get("name", ""), _rv(obj))
                changed = True
            else:
                changed = self._put(obj)
        rv = (obj.get("metadata") or {}).get("resourceVersion")
        if rv:
            self.resource_version = str(rv)
        if changed:
            self._changed()

    def replace(self, items: list[dict[str, Any]], resource_version: str) -> None:
        """A list's result: what is not in it was deleted meanwhile, unless it is newer than the
        list (created while the list was on its way)."""
        try:
            list_rv: int | None = int(resource_version)
        except ValueError:
            list_rv = None
        with self._lock:
            names = {(o.get("metadata") or {}).get("name", "") for o in items}
            for name, have in list(self._objects.items()):
                rv = _rv(have)
                if name not in names and not (list_rv is not None and rv is not None and rv > list_rv):
                    self._drop(name, list_rv)
            for obj in items:
                self._put(obj)
            self.resource_version = resource_version
        self.synced.set()
        self._changed()

    # ------------------------------------------------------------ the list-watch loop

    def list_once(self) -> None:
        items, rv = self.kube.list_with_version(self.kind, self.namespace, self.label_selector, field_selector=self.field_selector)
        self.lists += 1
        self.replace(items, rv)

    def watch_once(self) -> None:
        """One watch request from the last resourceVersion, until the server ends it. Raises
        :class:`Expired` when that resourceVersion is gone."""
        self.watches += 1

        def opened(resp: Any) -> None:
            self._resp = resp

        try:
            for event_type, obj in self.kube.watch(self.kind, self.namespace, label_selector=self.label_selector,
                                                   field_selector=self.field_selector, resource_version=self.resource_version or None,
                                                   timeout_seconds=self.timeout_seconds, bookmarks=True, on_open=opened):
                if self._stop.is_set():
                    return
                self.apply(event_type, obj)
        finally:
            self._resp = None

    def run(self) -> None:
        """List (unless listed already), then watch until stopped; list again after a 410 or a
        broken watch."""
        need_list = not self.synced.is_set()
        while not self._stop.is_set():
            try:
                if need_list:
                    if self.lists:
                        self.relists += 1
                    self.list_once()
                    need_list = False
                self.watch_once()
            except Expired:
                log.info("watch of %s expired (410 Gone): listing again", self.kind)
                need_list = True
            except (BackendError, OSError, ValueError) as e:
                if self._stop.is_set():
                    return
                log.warning("watch of %s broke (%s): listing again in %.1fs", self.kind, e, self.retry_s)
                need_list = True
                self._stop.wait(self.retry_s)
            except Exception as e:  # urllib3's errors while the stream is read, a closed response
                if self._stop.is_set():
                    return
                log.warning("watch of %s broke (%s: %s): listing again in %.1fs", self.kind, type(e).__name__, e, self.retry_s)
                need_list = True
                self._stop.wait(self.retry_s)

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self.run, name=f"informer-{self.kind}", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        resp = self._resp
        if resp is not None:
            sock = getattr(getattr(resp, "connection", None), "sock", None)
            try:
                if sock is not None:
                    sock.shutdown(socket.SHUT_RDWR)  # ends the blocking read of the watch stream now
                resp.close()
            except Exception:  # noqa: S110 - closing a stream another thread reads may fail; the thread ends anyway
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


class ClusterCache:
    """The informers of one KubeRay backend: its runs' RayJobs (by name), their worker pods (indexed
    by run label), the Nodes, its DWS ProvisioningRequests (by name), and the Events matching
    ``event_selector`` (a field selector; indexed by ``event_index``, the pod an Event is about)."""

    def __init__(self, kube: KubeClient, namespace: str, *, run_selector: str, pod_selector: str, dws_selector: str,
                 run_label: str, event_selector: str, event_index: Callable[[dict[str, Any]], str | None],
                 on_change: Callable[[], None] | None = None, timeout_seconds: int = 30):
        self.rayjobs = Informer(kube, "RayJob", namespace, run_selector, on_change=on_change, timeout_seconds=timeout_seconds)
        self.pods = Informer(kube, "Pod", namespace, pod_selector, index=run_label, timeout_seconds=timeout_seconds)
        self.nodes = Informer(kube, "Node", namespace, None, on_change=on_change, timeout_seconds=timeout_seconds)
        self.provreqs = Informer(kube, "ProvisioningRequest", namespace, dws_selector, on_change=on_change,
                                 timeout_seconds=timeout_seconds)
        self.events = Informer(kube, "Event", namespace, None, field_selector=event_selector, index=event_index,
                               on_change=on_change, timeout_seconds=timeout_seconds)
        self.informers = (self.rayjobs, self.pods, self.nodes, self.provreqs, self.events)

    def start(self) -> None:
        for i in self.informers:
            i.start()

    def stop(self) -> None:
        for i in self.informers:
            i._stop.set()
        for i in self.informers:
            i.stop()

    def wait_synced(self, timeout: float) -> bool:
        """Whether every informer has listed once within ``timeout`` seconds."""
        return all(i.synced.wait(timeout) for i in self.informers)

    @property
    def synced(self) -> bool:
        return all(i.synced.is_set() for i in self.informers)

    def counters(self) -> dict[str, dict[str, int]]:
        return {i.kind: {"lists": i.lists, "relists": i.relists, "watches": i.watches, "events": i.events} for i in self.informers}
