"""A local server speaking the subset of Google's Compute, Cloud Scheduler, Resource Manager and Service
Usage REST APIs the CLI uses, and Secret Manager's access call the agent makes.

Every request is checked against Google's own API description: the discovery
documents shipped inside google-api-python-client (method and path, required
path parameters, known query parameters and their types, the request body's
field names, types and enums). A mismatch is answered 400 in Google's error
format and recorded in `violations`, which the fixture turns into a test failure.
Long-running operations go PENDING -> RUNNING -> DONE across polls, so callers
must really wait on them.
"""
from __future__ import annotations

import json
import os
import re
import socket
import socketserver
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Optional
from urllib.parse import parse_qs, urlsplit

import googleapiclient

DOCS = os.path.join(os.path.dirname(googleapiclient.__file__), "discovery_cache", "documents")
# Parameters every Google API accepts (the discovery document's top-level "parameters").
STANDARD_QUERY = {"$alt", "$.xgafv", "alt", "fields", "key", "prettyPrint", "quotaUser", "userIp", "access_token",
                  "callback", "oauth_token", "upload_protocol", "uploadType"}


def load_discovery(name: str) -> dict:
    with open(os.path.join(DOCS, name), encoding="utf-8") as fh:
        return json.load(fh)


class Discovery:
    """Methods of one API indexed by HTTP verb and path template, and the validation rules."""

    def __init__(self, doc: dict) -> None:
        self.doc = doc
        self.prefix = "/" + doc["servicePath"].strip("/") if doc["servicePath"].strip("/") else ""
        self.methods: list[tuple[str, re.Pattern, str, dict]] = []
        self._index(doc.get("resources", {}), "")

    def _index(self, resources: dict, prefix: str) -> None:
        for rname, res in resources.items():
            for mname, m in res.get("methods", {}).items():
                template = m.get("flatPath", m["path"])
                regex = re.sub(r"\{\+?(\w+)\}", r"(?P<\1>[^/]+)", template.replace(":", r"\:"))
                pattern = re.compile(f"^{self.prefix}/{regex}$")
                self.methods.append((m["httpMethod"], pattern, f"{prefix}{rname}.{mname}", m))
            self._index(res.get("resources", {}), f"{prefix}{rname}.")

    def match(self, verb: str, path: str) -> Optional[tuple[str, dict, dict]]:
        for method, regex, mid, m in self.methods:
            found = regex.match(path)
            if method == verb and found:
                return mid, m, found.groupdict()
        return None

    def validate(self, m: dict, path_params: dict, query: dict, body: Any) -> list[str]:
        errors = []
        params = m.get("parameters", {})
        for name in m.get("parameterOrder", []):
            spec = params.get(name, {})
            # A flatPath route spells a {+name} path parameter as several segments, all matched.
            covered = spec.get("location") == "path" and "flatPath" in m
            if spec.get("required") and not (covered or path_params.get(name) or query.get(name)):
                errors.append(f"required parameter {name!r} missing")
        for name, value in path_params.items():
            pattern = params.get(name, {}).get("pattern")
            if pattern and not re.fullmatch(pattern, value):  # the whole value, as Google routes it
                errors.append(f"path parameter {name}={value!r} does not match {pattern}")
        for name, values in query.items():
            if name in STANDARD_QUERY:
                continue
            spec = params.get(name)
            if spec is None or spec.get("location") != "query":
                errors.append(f"unknown query parameter {name!r}")
                continue
            for value in values:
                errors += self._scalar(f"query {name}", spec, value, from_query=True)
        if "request" in m:
            schema = self.doc["schemas"][m["request"]["$ref"]]
            if body is None:
                errors.append(f"request body ({m['request']['$ref']}) missing")
            else:
                errors += self._value(m["request"]["$ref"], schema, body, m.get("id", ""))
        elif body not in (None, {}, ""):
            errors.append("this method takes no request body")
        return errors

    def _scalar(self, where: str, spec: dict, value: Any, from_query: bool = False) -> list[str]:
        kind = spec.get("type")
        if "enum" in spec and isinstance(value, int) and not isinstance(value, bool):
            # `$alt=json;enum-encoding=int` (the REST transports' rest_numeric_enums): the enum's index.
            ok = 0 <= value < len(spec["enum"])
            return [] if ok else [f"{where}: enum number {value} out of range 0-{len(spec['enum']) - 1}"]
        if "enum" in spec and value not in spec["enum"]:
            return [f"{where}: {value!r} is not one of {spec['enum'][:8]}"]
        if kind == "integer" or (kind == "string" and spec.get("format") in ("int64", "uint64")):
            if isinstance(value, bool) or not re.match(r"^-?[0-9]+$", str(value)):
                return [f"{where}: expected an integer, got {value!r}"]
        elif kind == "boolean":
            ok = value in ("true", "false") if from_query else isinstance(value, bool)
            if not ok:
                return [f"{where}: expected a boolean, got {value!r}"]
        elif kind == "number":
            if isinstance(value, bool) or not isinstance(value, (int, float)) and not from_query:
                return [f"{where}: expected a number, got {value!r}"]
        elif kind == "string" and not from_query and not isinstance(value, str):
            return [f"{where}: expected a string, got {value!r}"]
        return []

    def _value(self, where: str, spec: dict, value: Any, method: str = "") -> list[str]:
        """A request body against its schema: types, enums, unknown fields, fields the method requires
        (Compute's `annotations.required`), and output-only fields, which a request may not carry
        (Compute's "[Output Only]" descriptions, the other APIs' `readOnly`)."""
        if "$ref" in spec:
            return self._value(where, self.doc["schemas"][spec["$ref"]], value, method)
        kind = spec.get("type")
        if kind == "object":
            if not isinstance(value, dict):
                return [f"{where}: expected an object, got {type(value).__name__}"]
            errors = []
            props = spec.get("properties", {})
            extra = spec.get("additionalProperties")
            for key, prop in props.items():
                if method and method in prop.get("annotations", {}).get("required", []) and key not in value:
                    errors.append(f"{where}: field {key!r} is required by {method}")
            for key, item in value.items():
                if key in props:
                    if _output_only(props[key]):
                        errors.append(f"{where}.{key}: output-only field sent in a request")
                    errors += self._value(f"{where}.{key}", props[key], item, method)
                elif extra is not None:
                    errors += self._value(f"{where}[{key!r}]", extra, item, method)
                else:
                    errors.append(f"{where}: unknown field {key!r}")
            return errors
        if kind == "array":
            if not isinstance(value, list):
                return [f"{where}: expected an array, got {type(value).__name__}"]
            return [e for i, item in enumerate(value)
                    for e in self._value(f"{where}[{i}]", spec["items"], item, method)]
        if kind == "any":
            return []
        return self._scalar(where, spec, value)


def _output_only(prop: dict) -> bool:
    return bool(prop.get("readOnly")) or prop.get("description", "").startswith("[Output Only]")


def google_error(code: int, status: str, message: str, reason: str = "") -> dict:
    """Google's JSON error body (what api_core turns into exceptions)."""
    err: dict[str, Any] = {"code": code, "message": message, "status": status}
    err["errors"] = [{"message": message, "domain": "global", "reason": reason or status.lower()}]
    return {"error": err}


ERRORS = {
    "permission": (403, "PERMISSION_DENIED", "Required 'compute.instances.create' permission for "
                   "'projects/{project}/zones/{zone}/instances/{name}'", "forbidden"),
    "api-disabled": (403, "PERMISSION_DENIED", "Compute Engine API has not been used in project {project} before or "
                     "it is disabled. Enable it by visiting https://console.developers.google.com/apis/api/"
                     "compute.googleapis.com/overview?project={project} then retry.", "accessNotConfigured"),
    "quota": (403, "PERMISSION_DENIED", "Quota 'CPUS' exceeded.  Limit: 8.0 in region {region}.", "quotaExceeded"),
}


# The subnets an auto mode network (such as `default`) starts with, one per region, named after the network
# (https://cloud.google.com/vpc/docs/subnets#ip-ranges): a few regions' ranges.
AUTO_MODE_RANGES = {"europe-west2": "10.154.0.0/20", "europe-west1": "10.132.0.0/20",
                    "us-central1": "10.128.0.0/20", "us-east1": "10.142.0.0/20"}


class FakeCompute:
    """State and handlers for the Compute methods the CLI calls."""

    def __init__(self) -> None:
        self.instances: dict[tuple[str, str, str], dict] = {}
        self.disks: dict[tuple[str, str, str], dict] = {}  # (project, zone, name) -> disk
        self.images: dict[tuple[str, str], dict] = {}  # (project, family) -> its newest image
        self.all_images: dict[str, list[dict]] = {}  # project -> every image, oldest first
        self.operations: dict[str, dict] = {}
        self.policies: dict[str, dict] = {}  # projects/P/regions/R/resourcePolicies/N -> policy
        self.firewalls: dict[tuple[str, str], dict] = {}  # (project, name) -> rule
        self.subnets: dict[tuple[str, str, str], str] = {}  # (project, region, name) -> range, beyond auto mode's
        self.google_access: set[tuple[str, str, str]] = set()  # subnets with Private Google Access on
        self.fail_next: dict[str, str] = {}  # method id -> key of ERRORS, or "zone-exhausted"
        self.counter = 0
        # Where images.insert reads a rawDisk.source https://storage.googleapis.com/B/O from: a storage
        # emulator's endpoint (as GCE reads the bucket), or None when no test pushes images.
        self.storage_endpoint: Optional[str] = None

    def add_image(self, project: str, family: str, name: str, created: str = "2026-11-24T10:00:00.000-08:00",
                  airflow: str = "2-0-2", mlflow: str = "2-17-2", postgresql: str = "10") -> None:
        """An image as Packer's googlecompute source leaves it (labels from the template)."""
        image = {
            "kind": "compute#image", "id": str(1234 + len(self.images)), "name": name, "family": family,
            "status": "READY", "creationTimestamp": created, "diskSizeGb": "30", "archiveSizeBytes": "4015898112",
            "selfLink": f"https://compute.googleapis.com/compute/v1/projects/{project}/global/images/{name}",
            "labels": {"playground-profile": family.rsplit("-", 1)[-1], "airflow": airflow, "mlflow": mlflow,
                       "postgresql": postgresql},
            # Packer's image inherits its source's features; Google's Ubuntu images are UEFI-compatible.
            "guestOsFeatures": [{"type": "UEFI_COMPATIBLE"}, {"type": "VIRTIO_SCSI_MULTIQUEUE"}]}
        self.images[(project, family)] = image
        self.all_images.setdefault(project, []).append(image)

    def _op(self, p: dict, kind: str, target: str, then=None, error: Optional[dict] = None) -> dict:
        self.counter += 1
        name = f"operation-{self.counter}-{kind.lower()}"  # Google's names: lowercase, digits, -
        scope = f"zones/{p['zone']}" if "zone" in p else f"regions/{p['region']}" if "region" in p else "global"
        base = f"https://compute.googleapis.com/compute/v1/projects/{p['project']}/{scope}"
        op = {"kind": "compute#operation", "id": str(1000 + self.counter), "name": name, "operationType": kind,
              "targetLink": target, "status": "PENDING", "progress": 0, "selfLink": f"{base}/operations/{name}"}
        if scope != "global":
            op[scope.split("s/")[0]] = base
        self.operations[name] = {"op": op, "polls": 0, "then": then, "error": error}
        return dict(op)

    def _advance(self, name: str) -> dict:
        rec = self.operations[name]
        rec["polls"] += 1
        op = rec["op"]
        if rec["polls"] == 1:
            op.update(status="RUNNING", progress=50)
        elif op["status"] != "DONE":
            op.update(status="DONE", progress=100)
            if rec["error"]:
                op["error"] = rec["error"]
                op["httpErrorStatusCode"] = 503
                op["httpErrorMessage"] = "SERVICE UNAVAILABLE"
            elif rec["then"]:
                rec["then"]()
        return dict(op)

    def handle(self, mid: str, p: dict, query: dict, body: Any) -> tuple[int, dict]:
        failure = self.fail_next.pop(mid, None)
        if failure in ERRORS:
            code, status, msg, reason = ERRORS[failure]
            return code, google_error(code, status, msg.format(project=p.get("project"), zone=p.get("zone"),
                                                              region=p.get("zone", "")[:-2],
                                                              name=(body or {}).get("name")), reason)
        key = (p.get("project"), p.get("zone"), p.get("instance"))
        link = lambda n: (f"https://compute.googleapis.com/compute/v1/projects/{p['project']}/zones/"  # noqa: E731
                          f"{p['zone']}/instances/{n}")
        if mid == "images.getFromFamily":
            image = self.images.get((p["project"], p["family"]))
            if image is None:
                return 404, google_error(404, "NOT_FOUND", f"The resource 'projects/{p['project']}/global/images/"
                                         f"family/{p['family']}' was not found", "notFound")
            return 200, image
        if mid == "subnetworks.get":
            found = self.subnets.get((p["project"], p["region"], p["subnetwork"])) or (
                AUTO_MODE_RANGES.get(p["region"]) if p["subnetwork"] == "default" else None)
            if found is None:
                return 404, google_error(404, "NOT_FOUND", f"The resource 'projects/{p['project']}/regions/"
                                         f"{p['region']}/subnetworks/{p['subnetwork']}' was not found", "notFound")
            # An auto mode network's subnets start without Private Google Access.
            return 200, {"kind": "compute#subnetwork", "name": p["subnetwork"], "ipCidrRange": found,
                         "region": p["region"], "network": f"projects/{p['project']}/global/networks/default",
                         "privateIpGoogleAccess": (p["project"], p["region"], p["subnetwork"]) in self.google_access}
        if mid == "firewalls.delete":
            link = (f"https://compute.googleapis.com/compute/v1/projects/{p['project']}/global/firewalls/"
                    f"{p['firewall']}")
            if (p["project"], p["firewall"]) not in self.firewalls:
                return 404, google_error(404, "NOT_FOUND", f"The resource 'projects/{p['project']}/global/"
                                         f"firewalls/{p['firewall']}' was not found", "notFound")
            return 200, self._op(p, "delete", link,
                                 then=lambda: self.firewalls.pop((p["project"], p["firewall"]), None))
        if mid in ("firewalls.get", "firewalls.insert"):
            name = p.get("firewall") or (body or {}).get("name")
            link = f"https://compute.googleapis.com/compute/v1/projects/{p['project']}/global/firewalls/{name}"
            rule = self.firewalls.get((p["project"], name))
            if mid == "firewalls.get":
                if rule is None:
                    return 404, google_error(404, "NOT_FOUND", f"The resource 'projects/{p['project']}/global/"
                                             f"firewalls/{name}' was not found", "notFound")
                return 200, rule
            if rule is not None:
                return 409, google_error(409, "ALREADY_EXISTS", f"The resource 'projects/{p['project']}/global/"
                                         f"firewalls/{name}' already exists", "alreadyExists")
            made = dict(body, kind="compute#firewall", id=str(7000 + self.counter), selfLink=link)
            return 200, self._op(p, "insert", link, then=lambda: self.firewalls.__setitem__((p["project"], name),
                                                                                            made))
        if mid in ("images.insert", "images.get", "images.delete"):
            return self._image(mid, p, body)
        if mid == "images.list":
            items = [i for i in self.all_images.get(p["project"], []) if _matches(i, query.get("filter", [""])[0])]
            return 200, {"kind": "compute#imageList", "id": "x", **({"items": items} if items else {})}
        if mid == "instances.insert":
            name = body.get("name", "")
            if not re.match(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$", name):
                return 400, google_error(400, "INVALID_ARGUMENT", f"Invalid value for field 'resource.name': "
                                         f"'{name}'. Must be a match of regex '(?:[a-z](?:[-a-z0-9]{{0,61}}"
                                         f"[a-z0-9])?)'", "invalid")
            if (p["project"], p["zone"], name) in self.instances:
                return 409, google_error(409, "ALREADY_EXISTS", f"The resource 'projects/{p['project']}/zones/"
                                         f"{p['zone']}/instances/{name}' already exists", "alreadyExists")
            if failure == "zone-exhausted":
                err = {"errors": [{"code": "ZONE_RESOURCE_POOL_EXHAUSTED", "message": f"The zone "
                                   f"'projects/{p['project']}/zones/{p['zone']}' does not have enough resources "
                                   "available to fulfill the request."}]}
                return 200, self._op(p, "insert", link(name), error=err)
            refused = self._shielded_refused(body)
            if refused:
                return 400, google_error(400, "INVALID_ARGUMENT", refused, "invalid")
            inst = dict(body, kind="compute#instance", id=str(5000 + self.counter), status="PROVISIONING",
                        selfLink=link(name), zone=f"projects/{p['project']}/zones/{p['zone']}",
                        creationTimestamp=time.strftime("%Y-%m-%dT%H:%M:%S.000-00:00", time.gmtime()))
            for sa in inst.get("serviceAccounts", []):
                if sa.get("email") == "default":  # GCE resolves it to the project's default account
                    sa["email"] = f"{PROJECT_NUMBER}-compute@developer.gserviceaccount.com"
            for i, nic in enumerate(inst.get("networkInterfaces", [])):
                # An address of the subnet's range, as GCE gives (europe-west2's auto mode range by default).
                base = AUTO_MODE_RANGES.get(p["zone"].rsplit("-", 1)[0], "10.154.0.0/20").split("/")[0]
                nic["networkIP"] = base.rsplit(".", 1)[0] + f".{10 + len(self.instances) + i}"
            inst["disks"] = [self._attached_at_insert(p, name, d, i) for i, d in enumerate(inst.get("disks", []))]
            inst["metadata"] = dict(inst.get("metadata") or {}, kind="compute#metadata")
            inst["metadata"]["fingerprint"] = _fingerprint(inst["metadata"].get("items", []))
            self.instances[(p["project"], p["zone"], name)] = inst
            return 200, self._op(p, "insert", link(name), then=lambda: inst.update(status="RUNNING"))
        if mid == "instances.setMetadata":
            inst = self.instances.get(key)
            if inst is None:
                return 404, google_error(404, "NOT_FOUND", f"The resource 'projects/{p['project']}/zones/"
                                         f"{p['zone']}/instances/{p['instance']}' was not found", "notFound")
            # Metadata.fingerprint (compute v1): "You must always provide an up-to-date fingerprint hash in
            # order to update or change metadata, otherwise the request will fail with error 412 conditionNotMet."
            if body.get("fingerprint") != inst["metadata"]["fingerprint"]:
                return 412, google_error(412, "FAILED_PRECONDITION", "Supplied fingerprint does not match current "
                                         "metadata fingerprint.", "conditionNotMet")
            items = body.get("items", [])
            new = {"kind": "compute#metadata", "items": items, "fingerprint": _fingerprint(items)}
            return 200, self._op(p, "setMetadata", link(p["instance"]), then=lambda: inst.update(metadata=new))
        if mid.startswith("resourcePolicies."):
            return self._policies(mid, p, body)
        if mid in ("instances.addResourcePolicies", "instances.removeResourcePolicies"):
            inst = self.instances.get(key)
            if inst is None:
                return 404, google_error(404, "NOT_FOUND", f"The resource 'projects/{p['project']}/zones/"
                                         f"{p['zone']}/instances/{p['instance']}' was not found", "notFound")
            links = [_policy_link(x) for x in body.get("resourcePolicies", [])]
            have = inst.setdefault("resourcePolicies", [])
            if mid == "instances.addResourcePolicies":
                missing = [x for x in links if x.split("/compute/v1/", 1)[1] not in self.policies]
                if missing:
                    return 404, google_error(404, "NOT_FOUND", f"The resource '{missing[0]}' was not found",
                                             "notFound")
                change = lambda: have.extend(x for x in links if x not in have)  # noqa: E731
            else:
                change = lambda: have.__setitem__(slice(None), [x for x in have if x not in links])  # noqa: E731
            return 200, self._op(p, mid.split(".")[1], link(p["instance"]), then=change)
        if mid.startswith("disks."):
            return self._disk(mid, p, body)
        if mid in ("instances.attachDisk", "instances.detachDisk"):
            return self._attach(mid, p, query, body)
        if mid in ("instances.get", "instances.stop", "instances.start", "instances.delete"):
            inst = self.instances.get(key)
            if inst is None:
                return 404, google_error(404, "NOT_FOUND", f"The resource 'projects/{p['project']}/zones/"
                                         f"{p['zone']}/instances/{p['instance']}' was not found", "notFound")
            if mid == "instances.get":
                return 200, inst
            if mid == "instances.stop":
                inst["status"] = "STOPPING"
                return 200, self._op(p, "stop", link(p["instance"]), then=lambda: inst.update(status="TERMINATED"))
            if mid == "instances.start":
                if not any(d.get("boot") for d in inst.get("disks", [])):
                    return 400, google_error(400, "INVALID_ARGUMENT", f"Invalid resource usage: 'Instance "
                                             f"{p['instance']} has no boot disk.'", "resourceNotReady")
                return 200, self._op(p, "start", link(p["instance"]), then=lambda: inst.update(status="RUNNING"))

            def gone():  # the VM, and the disks it would auto-delete; the others are only freed
                self.instances.pop(key, None)
                for d in inst.get("disks", []):
                    disk = self.disks.get((p["project"], p["zone"], d["source"].rsplit("/", 1)[-1]))
                    if disk is not None and d.get("autoDelete"):
                        self.disks.pop((p["project"], p["zone"], disk["name"]), None)
                    elif disk is not None:
                        disk["users"] = [u for u in disk.get("users", []) if u != link(p["instance"])]
            return 200, self._op(p, "delete", link(p["instance"]), then=gone)
        if mid == "instances.aggregatedList":
            zones: dict[str, list] = {}
            for (proj, zone, _), i in sorted(self.instances.items()):
                if proj == p["project"] and _matches(i, query.get("filter", [""])[0]):
                    zones.setdefault(f"zones/{zone}", []).append(i)
            return 200, {"kind": "compute#instanceAggregatedList", "id": f"projects/{p['project']}/aggregated/"
                         "instances", "items": {z: {"instances": items} for z, items in zones.items()}}
        if mid == "instances.list":
            items = [i for (proj, zone, _), i in sorted(self.instances.items())
                     if proj == p["project"] and zone == p["zone"] and _matches(i, query.get("filter", [""])[0])]
            return 200, {"kind": "compute#instanceList", "id": "x", "items": items} if items else \
                {"kind": "compute#instanceList", "id": "x"}
        if mid in ("zoneOperations.get", "zoneOperations.wait", "regionOperations.get", "regionOperations.wait",
                   "globalOperations.get", "globalOperations.wait"):
            if p["operation"] not in self.operations:
                return 404, google_error(404, "NOT_FOUND", f"operation {p['operation']} not found", "notFound")
            return 200, self._advance(p["operation"])
        return 501, google_error(501, "UNIMPLEMENTED", f"the fake does not implement {mid}")


    def _disk_link(self, p: dict, name: str) -> str:
        return f"https://compute.googleapis.com/compute/v1/projects/{p['project']}/zones/{p['zone']}/disks/{name}"

    def _new_disk(self, p: dict, name: str, size: str, kind: str, image: str = "", users=(),
                  labels: Optional[dict] = None) -> dict:
        disk = {"kind": "compute#disk", "id": str(8000 + len(self.disks)), "name": name, "sizeGb": str(size),
                "zone": f"https://compute.googleapis.com/compute/v1/projects/{p['project']}/zones/{p['zone']}",
                "type": kind, "status": "READY", "selfLink": self._disk_link(p, name), "users": list(users),
                "creationTimestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000-00:00", time.gmtime())}
        if image:
            disk["sourceImage"] = image
        if labels:
            disk["labels"] = dict(labels)
        self.disks[(p["project"], p["zone"], name)] = disk
        return disk

    def _attached_at_insert(self, p: dict, instance: str, d: dict, index: int) -> dict:
        """instances.insert's initializeParams make a disk (a boot disk is named after the VM), as GCE does."""
        init = d.get("initializeParams") or {}
        name = init.get("diskName") or (instance if d.get("boot") else f"{instance}-{index}")
        ilink = (f"https://compute.googleapis.com/compute/v1/projects/{p['project']}/zones/{p['zone']}/"
                 f"instances/{instance}")
        disk = self._new_disk(p, name, init.get("diskSizeGb") or "10", init.get("diskType", ""),
                              init.get("sourceImage", ""), [ilink], init.get("labels"))
        out = {k: v for k, v in d.items() if k != "initializeParams"}
        out.update(kind="compute#attachedDisk", source=disk["selfLink"], index=index,
                   deviceName=d.get("deviceName") or f"persistent-disk-{index}", mode=d.get("mode", "READ_WRITE"))
        return out

    def _disk(self, mid: str, p: dict, body: Any) -> tuple[int, dict]:
        name = p.get("disk") or (body or {}).get("name", "")
        key = (p["project"], p["zone"], name)
        disk = self.disks.get(key)
        if mid == "disks.insert":
            if not re.match(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$", name):
                return 400, google_error(400, "INVALID_ARGUMENT", f"Invalid value for field 'resource.name': "
                                         f"'{name}'.", "invalid")
            if disk is not None:
                return 409, google_error(409, "ALREADY_EXISTS", f"The resource '{disk['selfLink'].split('/v1/')[1]}'"
                                         " already exists", "alreadyExists")
            image = body.get("sourceImage", "")
            if image and self._image_by_link(image) is None:
                return 404, google_error(404, "NOT_FOUND", f"The resource '{image}' was not found", "notFound")
            made = lambda: self._new_disk(p, name, body.get("sizeGb") or "10", body.get("type", ""), image,  # noqa
                                          labels=body.get("labels"))
            return 200, self._op(p, "insert", self._disk_link(p, name), then=made)
        if disk is None:
            return 404, google_error(404, "NOT_FOUND", f"The resource 'projects/{p['project']}/zones/{p['zone']}/"
                                     f"disks/{name}' was not found", "notFound")
        if mid == "disks.get":
            return 200, disk
        if mid == "disks.delete":
            if disk.get("users"):  # GCE refuses to delete a disk an instance holds
                return 400, self._in_use(disk)
            return 200, self._op(p, "delete", disk["selfLink"], then=lambda: self.disks.pop(key, None))
        return 501, google_error(501, "UNIMPLEMENTED", f"the fake does not implement {mid}")

    @staticmethod
    def _in_use(disk: dict) -> dict:
        where, user = disk["selfLink"].split("/v1/")[1], disk["users"][0].split("/v1/")[1]
        return google_error(400, "INVALID_ARGUMENT", f"The disk resource '{where}' is already being used by "
                            f"'{user}'", "resourceInUseByAnotherResource")

    def _attach(self, mid: str, p: dict, query: dict, body: Any) -> tuple[int, dict]:
        """A boot disk changes only on a stopped VM (TERMINATED): GCE answers a running one's with an error
        (https://cloud.google.com/compute/docs/instances/stop-start-instance: stop it to detach a disk). The
        wording is the one this fake knows, not necessarily Google's."""
        key = (p["project"], p["zone"], p["instance"])
        inst = self.instances.get(key)
        if inst is None:
            return 404, google_error(404, "NOT_FOUND", f"The resource 'projects/{p['project']}/zones/{p['zone']}/"
                                     f"instances/{p['instance']}' was not found", "notFound")
        ilink = inst["selfLink"]
        if mid == "instances.detachDisk":
            device = (query.get("deviceName") or [""])[0]
            attached = next((d for d in inst["disks"] if d["deviceName"] == device), None)
            if attached is None:
                return 400, google_error(400, "INVALID_ARGUMENT", f"Invalid value for field 'deviceName': "
                                         f"'{device}'. No attached disk found with that device name.", "invalid")
            if attached.get("boot") and inst["status"] != "TERMINATED":
                return 400, google_error(400, "INVALID_ARGUMENT", "Invalid resource usage: 'The boot disk of a "
                                         "running instance cannot be detached.'", "resourceNotReady")

            def detach():
                inst["disks"] = [d for d in inst["disks"] if d is not attached]
                disk = self.disks.get((p["project"], p["zone"], attached["source"].rsplit("/", 1)[-1]))
                if disk is not None:
                    disk["users"] = [u for u in disk.get("users", []) if u != ilink]
            return 200, self._op(p, "detachDisk", ilink, then=detach)
        source = (body or {}).get("source", "")
        disk = self.disks.get((p["project"], p["zone"], source.rsplit("/", 1)[-1]))
        if disk is None:
            return 404, google_error(404, "NOT_FOUND", f"The resource '{source}' was not found", "notFound")
        if disk.get("users"):
            return 400, self._in_use(disk)
        if body.get("boot"):
            if inst["status"] != "TERMINATED":
                return 400, google_error(400, "INVALID_ARGUMENT", "Invalid resource usage: 'A boot disk can be "
                                         "attached to a stopped instance only.'", "resourceNotReady")
            if any(d.get("boot") for d in inst["disks"]):
                return 400, google_error(400, "INVALID_ARGUMENT", "Invalid value for field 'resource.boot': "
                                         "'true'. The instance already has a boot disk.", "invalid")

        def attach():
            d = dict(body, kind="compute#attachedDisk", index=len(inst["disks"]), mode=body.get("mode", "READ_WRITE"))
            d.setdefault("deviceName", disk["name"])
            inst["disks"] = ([d] + inst["disks"]) if d.get("boot") else inst["disks"] + [d]
            disk["users"] = [ilink]
        return 200, self._op(p, "attachDisk", ilink, then=attach)

    def _image_by_link(self, link: str) -> Optional[dict]:
        for images in self.all_images.values():
            for image in images:
                if image["selfLink"].endswith(link.split("/compute/v1/")[-1]):
                    return image
        return None

    def _shielded_refused(self, body: dict) -> str:
        """A Shielded VM boots UEFI: GCE refuses one whose boot image is not marked UEFI_COMPATIBLE
        (https://cloud.google.com/compute/shielded-vm/docs/creating-shielded-images). The wording is the one
        GCE answers, as far as this fake knows it."""
        shielded = body.get("shieldedInstanceConfig") or {}
        if not any(shielded.get(k) for k in ("enableSecureBoot", "enableVtpm", "enableIntegrityMonitoring")):
            return ""
        for d in body.get("disks", []):
            source = (d.get("initializeParams") or {}).get("sourceImage", "")
            image = self._image_by_link(source) if d.get("boot") and source else None
            if image is not None and {"type": "UEFI_COMPATIBLE"} not in image.get("guestOsFeatures", []):
                return ("Invalid value for field 'resource.shieldedInstanceConfig': ''. Shielded VM Config can only "
                        "be set when using a UEFI-compatible disk.")
        return ""

    def _image(self, mid: str, p: dict, body: Any) -> tuple[int, dict]:
        project = p["project"]
        name = p.get("image") or (body or {}).get("name", "")
        link = f"https://compute.googleapis.com/compute/v1/projects/{project}/global/images/{name}"
        found = next((i for i in self.all_images.get(project, []) if i["name"] == name), None)
        if mid != "images.insert":
            if found is None:
                return 404, google_error(404, "NOT_FOUND", f"The resource 'projects/{project}/global/images/{name}' "
                                         "was not found", "notFound")
            if mid == "images.get":
                return 200, found

            def delete():
                self.all_images[project].remove(found)
                newest = [i for i in self.all_images[project] if i.get("family") == found.get("family")]
                if newest:
                    self.images[(project, found["family"])] = newest[-1]
                else:
                    self.images.pop((project, found.get("family")), None)
            return 200, self._op(p, "delete", link, then=delete)
        if found is not None:
            return 409, google_error(409, "ALREADY_EXISTS", f"The resource 'projects/{project}/global/images/{name}' "
                                     "already exists", "alreadyExists")
        source = (body.get("rawDisk") or {}).get("source", "")
        m = re.match(r"^https://storage\.googleapis\.com/([a-z0-9][a-z0-9._-]{1,220})/(.+)$", source)
        if not m:
            return 400, google_error(400, "INVALID_ARGUMENT", f"Invalid value for field 'resource.rawDisk.source': "
                                     f"'{source}'. Expected https://storage.googleapis.com/BUCKET/OBJECT", "invalid")
        image = {"kind": "compute#image", "id": str(8000 + self.counter), "name": name, "selfLink": link,
                 "creationTimestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000-00:00", time.gmtime()),
                 "status": "PENDING", "sourceType": "RAW", **{k: v for k, v in body.items() if k != "name"}}
        self.all_images.setdefault(project, []).append(image)
        problem, sizes = self._read_archive(m.group(1), m.group(2))
        if problem:
            image["status"] = "FAILED"
            return 200, self._op(p, "insert", link, error={"errors": [{"code": "INVALID_IMAGE_FILE",
                                                                         "message": problem}]})

        def ready():
            image.update(status="READY", archiveSizeBytes=str(sizes[0]), diskSizeGb=str(-(-sizes[1] // 2**30)))
            if image.get("family"):
                self.images[(project, image["family"])] = image
        return 200, self._op(p, "insert", link, then=ready)

    def _read_archive(self, bucket: str, name: str) -> tuple[str, tuple[int, int]]:
        """What GCE checks of an imported archive before it makes a disk of it: that the object exists and is
        a gzip-compressed tar whose first member is a file named disk.raw. Returns (problem, (archive bytes,
        disk bytes))."""
        import gzip
        import tarfile
        import urllib.error
        import urllib.parse
        import urllib.request

        if not self.storage_endpoint:
            return "this fake was given no storage endpoint to read rawDisk.source from", (0, 0)
        url = f"{self.storage_endpoint}/download/storage/v1/b/{bucket}/o/{urllib.parse.quote(name, safe='')}?alt=media"
        try:
            with urllib.request.urlopen(url, timeout=60) as resp:
                length = int(resp.headers.get("Content-Length") or 0)
                try:
                    with tarfile.open(fileobj=resp, mode="r|gz") as tar:
                        first = tar.next()
                except (tarfile.TarError, gzip.BadGzipFile, EOFError, OSError) as exc:
                    return f"The file gs://{bucket}/{name} is not a gzip-compressed tar archive: {exc}", (0, 0)
        except urllib.error.HTTPError as exc:
            return f"The resource gs://{bucket}/{name} could not be read ({exc.code})", (0, 0)
        if first is None or first.name != "disk.raw" or not first.isfile():
            return (f"The archive gs://{bucket}/{name} must hold a file named disk.raw, first; it holds "
                    f"{first.name if first else 'nothing'!r}"), (0, 0)
        return "", (length, first.size)

    def _policies(self, mid: str, p: dict, body: Any) -> tuple[int, dict]:
        name = (body or {}).get("name") if mid == "resourcePolicies.insert" else p.get("resourcePolicy")
        key = f"projects/{p['project']}/regions/{p['region']}/resourcePolicies/{name}"
        have = self.policies.get(key)
        if mid == "resourcePolicies.insert":
            if have is not None:
                return 409, google_error(409, "ALREADY_EXISTS", f"The resource '{key}' already exists",
                                         "alreadyExists")
            made = dict(body, kind="compute#resourcePolicy", id=str(7000 + self.counter), status="READY",
                        region=f"https://compute.googleapis.com/compute/v1/projects/{p['project']}/regions/"
                               f"{p['region']}", selfLink=_policy_link(key))
            return 200, self._op(p, "createResourcePolicy", made["selfLink"],
                                 then=lambda: self.policies.__setitem__(key, made))
        if have is None:
            return 404, google_error(404, "NOT_FOUND", f"The resource '{key}' was not found", "notFound")
        if mid == "resourcePolicies.get":
            return 200, have
        if mid == "resourcePolicies.patch":
            return 200, self._op(p, "patchResourcePolicy", have["selfLink"], then=lambda: have.update(
                {k: v for k, v in body.items() if k != "name"}))
        if mid == "resourcePolicies.delete":
            users = [n for (_, _, n), i in self.instances.items() if have["selfLink"] in i.get("resourcePolicies", [])]
            if users:
                return 400, google_error(400, "FAILED_PRECONDITION", f"The resource_policy resource '{key}' is "
                                         f"already being used by 'instances/{users[0]}'",
                                         "resourceInUseByAnotherResource")
            return 200, self._op(p, "deleteResourcePolicy", have["selfLink"], then=lambda: self.policies.pop(key))
        return 501, google_error(501, "UNIMPLEMENTED", f"the fake does not implement {mid}")


PROJECT_NUMBER = "123456789012"


def _fingerprint(items: list) -> str:
    import base64
    import hashlib

    return base64.b64encode(hashlib.sha256(json.dumps(items, sort_keys=True).encode()).digest()[:8]).decode()


def _policy_link(ref: str) -> str:
    """Compute accepts a policy as a full URL or a partial path; instances hold full URLs."""
    if ref.startswith("https://"):
        return ref
    return "https://compute.googleapis.com/compute/v1/" + ref.split("/compute/v1/")[-1].lstrip("/")


class FakeScheduler:
    """Cloud Scheduler jobs: create, get, patch (with its update mask), delete, list."""

    def __init__(self, doc: dict) -> None:
        self.jobs: dict[str, dict] = {}
        self.fail_next: dict[str, str] = {}
        self.methods = doc["schemas"]["HttpTarget"]["properties"]["httpMethod"]["enum"]
        self.job_fields = set(doc["schemas"]["Job"]["properties"])

    def _store(self, job: dict) -> dict:
        target = job.get("httpTarget", {})
        if isinstance(target.get("httpMethod"), int):  # keep the name, as the API answers with it
            target["httpMethod"] = self.methods[target["httpMethod"]]
        job.update(state="ENABLED", userUpdateTime=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        return job

    def handle(self, mid: str, p: dict, query: dict, body: Any) -> tuple[int, dict]:
        failure = self.fail_next.pop(mid, None)
        if failure == "api-disabled":
            return 403, google_error(403, "PERMISSION_DENIED", f"Cloud Scheduler API has not been used in project "
                                     f"{p.get('projectsId')} before or it is disabled.", "accessNotConfigured")
        parent = f"projects/{p.get('projectsId')}/locations/{p.get('locationsId')}"
        name = f"{parent}/jobs/{p.get('jobsId')}"
        if mid == "projects.locations.jobs.create":
            name = body.get("name", "")
            if not name.startswith(parent + "/jobs/") or not re.fullmatch(r"[a-zA-Z\d_-]{1,500}",
                                                                           name.rsplit("/", 1)[-1]):
                return 400, google_error(400, "INVALID_ARGUMENT", f"Job name {name!r} must be {parent}/jobs/ID")
            if name in self.jobs:
                return 409, google_error(409, "ALREADY_EXISTS", f"Job {name} already exists.")
            self.jobs[name] = self._store(dict(body))
            return 200, self.jobs[name]
        if mid == "projects.locations.jobs.list":
            jobs = [j for n, j in sorted(self.jobs.items()) if n.startswith(parent + "/")]
            return 200, {"jobs": jobs} if jobs else {}
        job = self.jobs.get(name)
        if job is None:
            return 404, google_error(404, "NOT_FOUND", f"Job not found: {name}.")
        if mid == "projects.locations.jobs.get":
            return 200, job
        if mid == "projects.locations.jobs.delete":
            del self.jobs[name]
            return 200, {}
        if mid == "projects.locations.jobs.patch":
            mask = [f for f in query.get("updateMask", [""])[0].split(",") if f]
            unknown = [f for f in mask if f not in self.job_fields]
            if unknown:
                return 400, google_error(400, "INVALID_ARGUMENT", f"updateMask: unknown field {unknown[0]!r}")
            for field in mask or body:
                if field in body:
                    job[field] = body[field]
                else:
                    job.pop(field, None)
            return 200, self._store(job)
        return 501, google_error(501, "UNIMPLEMENTED", f"the fake does not implement {mid}")


class FakeIam:
    """Resource Manager's testIamPermissions and Service Usage's services.get: what the caller may do and
    which APIs are on. `denied` and `disabled` make them say no."""

    def __init__(self) -> None:
        self.denied: set[str] = set()
        self.disabled: set[str] = set()
        # The project's IAM policy: like a fresh project whose default compute account has no role.
        self.bindings: list[dict] = [{"role": "roles/owner", "members": ["user:ada@example.com"]}]
        self.policy_readable = True

    def handle(self, mid: str, p: dict, query: dict, body: Any) -> tuple[int, dict]:
        if mid == "projects.getIamPolicy":
            if not self.policy_readable:
                return 403, google_error(403, "PERMISSION_DENIED", f"The caller does not have permission "
                                         f"(resourcemanager.projects.getIamPolicy on projects/{p['projectsId']})")
            return 200, {"version": 1, "etag": "BwYx", "bindings": self.bindings}
        if mid == "projects.testIamPermissions":
            granted = [x for x in body.get("permissions", []) if x not in self.denied]
            return 200, {"permissions": granted} if granted else {}
        if mid == "projects.get":
            return 200, {"name": f"projects/{PROJECT_NUMBER}", "projectId": p["projectsId"], "state": "ACTIVE"}
        if mid == "services.get":
            state = "DISABLED" if p["servicesId"] in self.disabled else "ENABLED"
            return 200, {"name": f"projects/{PROJECT_NUMBER}/services/{p['servicesId']}", "state": state,
                         "parent": f"projects/{PROJECT_NUMBER}"}
        return 501, google_error(501, "UNIMPLEMENTED", f"the fake does not implement {mid}")


class FakeSecrets:
    """Secret Manager's versions.access, for the agent: needs the bearer token the metadata server gave."""

    def __init__(self, google: "FakeGoogle") -> None:
        self.google = google
        self.values: dict[tuple[str, str], str] = {}  # (project, secret) -> latest value
        self.token = "ya29.fake-instance-token"
        # The scopes the instance's token carries: Secret Manager accepts only cloud-platform, whatever the
        # account's roles (https://cloud.google.com/secret-manager/docs/accessing-the-api).
        self.token_scopes = ["https://www.googleapis.com/auth/cloud-platform"]
        self.denied: set[str] = set()  # secret ids the instance's account may not read
        self.secrets: dict[tuple[str, str], dict] = {}  # (project, secret) -> the Secret the launcher made
        self.policies: dict[tuple[str, str], dict] = {}  # (project, secret) -> its IAM policy

    def handle(self, mid: str, p: dict, query: dict, body: Any) -> tuple[int, dict]:
        import base64

        if mid != "projects.secrets.versions.access":
            return self._admin(mid, p, query, body)
        if self.google.requests[-1]["headers"].get("Authorization") != f"Bearer {self.token}":
            return 401, google_error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.")
        name = f"projects/{p['projectsId']}/secrets/{p['secretsId']}"
        if "https://www.googleapis.com/auth/cloud-platform" not in self.token_scopes:
            return 403, google_error(403, "PERMISSION_DENIED", "Request had insufficient authentication scopes.",
                                     "ACCESS_TOKEN_SCOPE_INSUFFICIENT")
        granted = any(b.get("role") == "roles/secretmanager.secretAccessor"
                      for b in self.policies.get((p["projectsId"], p["secretsId"]), {}).get("bindings", []))
        made_here = (p["projectsId"], p["secretsId"]) in self.secrets  # else a secret the test set up, readable
        if p["secretsId"] in self.denied or (made_here and not granted):
            return 403, google_error(403, "PERMISSION_DENIED", f"Permission 'secretmanager.versions.access' "
                                     f"denied for resource '{name}/versions/{p['versionsId']}' (or it may not exist).")
        value = self.values.get((p["projectsId"], p["secretsId"]))
        if value is None or p["versionsId"] not in ("latest", "1"):
            return 404, google_error(404, "NOT_FOUND", f"Secret [{name}] not found or has no versions.")
        return 200, {"name": f"projects/{PROJECT_NUMBER}/secrets/{p['secretsId']}/versions/1",
                     "payload": {"data": base64.b64encode(value.encode()).decode()}}


    def _admin(self, mid: str, p: dict, query: dict, body: Any) -> tuple[int, dict]:
        """What the launcher does with its own credentials: create a secret, add a version, grant, delete."""
        import base64

        project, sid = p["projectsId"], p.get("secretsId") or (query.get("secretId") or [""])[0]
        name = f"projects/{project}/secrets/{sid}"
        if mid == "projects.secrets.create":
            # secretId: "up to 255 characters ... letters, numerals, and the hyphen (-) and underscore (_)".
            if not re.match(r"^[A-Za-z0-9_-]{1,255}$", sid):
                return 400, google_error(400, "INVALID_ARGUMENT", f"Invalid secret id {sid!r}.")
            if not (body or {}).get("replication"):
                return 400, google_error(400, "INVALID_ARGUMENT", "Secret.replication is required.")
            if (project, sid) in self.secrets:
                return 409, google_error(409, "ALREADY_EXISTS", f"Secret [{name}] already exists.")
            self.secrets[(project, sid)] = dict(body, name=name, createTime="2026-12-05T01:00:00Z")
            return 200, self.secrets[(project, sid)]
        if (project, sid) not in self.secrets:
            return 404, google_error(404, "NOT_FOUND", f"Secret [{name}] not found.")
        if mid == "projects.secrets.addVersion":
            data = base64.b64decode(((body or {}).get("payload") or {}).get("data", ""))
            if len(data) > 65536:  # a version's payload is 64 KiB at most
                return 400, google_error(400, "INVALID_ARGUMENT", "Secret Payload cannot exceed 65536 bytes.")
            self.values[(project, sid)] = data.decode()
            return 200, {"name": f"{name}/versions/1", "state": "ENABLED"}
        if mid == "projects.secrets.setIamPolicy":
            self.policies[(project, sid)] = body["policy"]
            return 200, dict(body["policy"], etag="BwYy")
        if mid == "projects.secrets.delete":
            del self.secrets[(project, sid)]
            self.values.pop((project, sid), None)
            self.policies.pop((project, sid), None)
            return 200, {}
        return 501, google_error(501, "UNIMPLEMENTED", f"the fake does not implement {mid}")


def _matches(inst: dict, flt: str) -> bool:
    """The label filters the CLI sends: `labels.KEY = "VALUE"` terms joined by AND."""
    for key, value in re.findall(r'labels\.([a-z0-9_-]+)\s*=\s*"?([^"\s)]*)"?', flt):
        if inst.get("labels", {}).get(key) != value:
            return False
    return True


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def server_bind(self) -> None:
        # IP_FREEBIND: an image test binds this machine's end of a local instance's veth before the
        # instance's network exists, so the agent's first read at boot already finds the server.
        self.socket.setsockopt(socket.IPPROTO_IP, getattr(socket, "IP_FREEBIND", 15), 1)
        socketserver.TCPServer.server_bind(self)  # without HTTPServer's reverse lookup of the address
        self.server_name, self.server_port = self.server_address[:2]


class FakeGoogle:
    """The HTTP server: routes by discovery document, validates, dispatches to the fakes."""

    def __init__(self, bind: str = "127.0.0.1", port: int = 0) -> None:
        self.compute = FakeCompute()
        scheduler_doc = load_discovery("cloudscheduler.v1.json")
        self.scheduler = FakeScheduler(scheduler_doc)
        self.iam = FakeIam()
        self.secrets = FakeSecrets(self)
        self.apis = [(Discovery(load_discovery("compute.v1.json")), self.compute),
                     (Discovery(scheduler_doc), self.scheduler),
                     (Discovery(load_discovery("cloudresourcemanager.v3.json")), self.iam),
                     (Discovery(load_discovery("serviceusage.v1.json")), self.iam),
                     (Discovery(load_discovery("secretmanager.v1.json")), self.secrets)]
        self.requests: list[dict] = []
        self.violations: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _serve(self) -> None:
                url = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode(errors="replace")
                query = parse_qs(url.query, keep_blank_values=True)
                code, doc = fake.dispatch(self.command, url.path, query, body, dict(self.headers))
                out = json.dumps(doc).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json; charset=UTF-8")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            do_GET = do_POST = do_DELETE = do_PATCH = do_PUT = _serve

        self.server = _Server((bind, port), Handler)
        self.endpoint = f"http://{bind}:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def dispatch(self, verb: str, path: str, query: dict, body: Any, headers: Optional[dict] = None) \
            -> tuple[int, dict]:
        for disc, impl in self.apis:
            found = disc.match(verb, path)
            if found is None:
                continue
            mid, m, params = found
            errors = disc.validate(m, params, query, body)
            self.requests.append({"method": mid, "params": params, "query": query, "body": body,
                                  "headers": headers or {}})
            if errors:
                self.violations += [f"{mid}: {e}" for e in errors]
                return 400, google_error(400, "INVALID_ARGUMENT", f"{mid}: " + "; ".join(errors), "invalid")
            return impl.handle(mid, params, query, body)
        self.violations.append(f"no method in the discovery documents for {verb} {path}")
        return 404, google_error(404, "NOT_FOUND", f"no such method: {verb} {path}")

    def calls(self, method: str) -> list[dict]:
        return [r for r in self.requests if r["method"] == method]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
