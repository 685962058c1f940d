#!/usr/bin/env python3
"""Checks deploy/ against vendored schemas, offline (scripts/check-deploy runs it).

- every document in deploy/kubernetes/*.yaml against the Kubernetes schema of its
  apiVersion/kind (schemas/kubernetes-*-strict.json: unknown fields are errors; a kind that is
  not vendored is an error too, so add it in vendor_schemas.py);
- deploy/compose.yaml against the compose-spec schema (schemas/compose-spec.json);
- and that both checks can fail: a misspelt field in a copy of each must be rejected.

Exit 0 when all pass, 1 with every problem listed otherwise. Needs python3-yaml and
python3-jsonschema (scripts/install-test-deps).
"""
import copy
import glob
import json
import os
import sys

import jsonschema
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def load_json(name):
    with open(os.path.join(HERE, "schemas", name)) as f:
        return json.load(f)


KUBE = load_json(next(n for n in os.listdir(os.path.join(HERE, "schemas")) if n.startswith("kubernetes-")))
COMPOSE = load_json("compose-spec.json")


def kube_errors(doc):
    key = "kind:{}/{}".format(doc.get("apiVersion"), doc.get("kind"))
    if key not in KUBE["$defs"]:
        return [f"{key[5:]} has no vendored schema (tests/deploy/vendor_schemas.py)"]
    schema = {"$schema": KUBE["$schema"], "$ref": "#/$defs/" + key.replace("~", "~0").replace("/", "~1"), "$defs": KUBE["$defs"]}
    v = jsonschema.Draft202012Validator(schema)
    return [f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}" for e in v.iter_errors(doc)]


def compose_errors(doc):
    v = jsonschema.Draft201909Validator(COMPOSE)  # the schema says 2019-09
    return [f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}" for e in v.iter_errors(doc)]


def main():
    problems, checked = [], 0
    deployment = None
    for path in sorted(glob.glob(os.path.join(ROOT, "deploy/kubernetes/*.yaml"))):
        with open(path) as f:
            for doc in yaml.safe_load_all(f):
                if doc is None:
                    continue
                checked += 1
                if doc.get("kind") == "Deployment":
                    deployment = doc
                rel = os.path.relpath(path, ROOT)
                problems += [f"{rel} ({doc.get('kind')}): {e}" for e in kube_errors(doc)]
    with open(os.path.join(ROOT, "deploy/compose.yaml")) as f:
        compose = yaml.safe_load(f)
    checked += 1
    problems += [f"deploy/compose.yaml: {e}" for e in compose_errors(compose)]

    # the checks can fail: a misspelt field is caught in each
    if deployment is None:
        problems.append("deploy/kubernetes has no Deployment")
    else:
        bad = copy.deepcopy(deployment)
        bad["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
        if not kube_errors(bad):
            problems.append("self-test: a misspelt container field passed the Kubernetes schema")
    bad = copy.deepcopy(compose)
    bad["services"]["resetline"]["helthcheck"] = {}
    if not compose_errors(bad):
        problems.append("self-test: a misspelt service field passed the compose schema")

    for p in problems:
        print(f"check-deploy: {p}", file=sys.stderr)
    print(f"check-deploy: {checked} documents checked against the vendored schemas, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
