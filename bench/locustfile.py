"""Locust users for metre's API, and a hello-world reference (bench/loadtest.py runs both).

MetreUser is a reader of the dashboard or a script: mostly repository listings and metric
reads of the registered repositories (the mix below, per 100 requests: 15 listings, 10
repository pages, 60 metric reads over every metric and granularity, 10 organisation-wide
reads, 5 registrations). A registration posts one of the URLs in METRE_LOCUST_REGISTER
(comma-separated local paths, made by the runner): the first post of each is a 201 (and its
ingest then runs beside the load, as a real registration's does), later ones a 409, both
counted as success. HelloUser asks a one-route FastAPI app for the same number of requests.

Locust reads no METRE_* setting of metre itself; the two variables here are this file's own
inputs: METRE_LOCUST_REPOS (ids to read, comma-separated) and METRE_LOCUST_REGISTER.
"""

from __future__ import annotations

import os
import random

from locust import FastHttpUser, between, task

REPOS = [int(s) for s in os.environ.get("METRE_LOCUST_REPOS", "1").split(",") if s]
REGISTER = [s for s in os.environ.get("METRE_LOCUST_REGISTER", "").split(",") if s]
TOKEN = os.environ.get("METRE_LOCUST_TOKEN", "")

REPO_METRICS = [
    "activity?granularity=day",
    "activity?granularity=week",
    "activity?granularity=month",
    "authors",
    "contributors?granularity=month",
    "punchcard",
    "commit-size",
    "languages",
    "files?limit=50",
    "hotspots",
    "ownership",
    "truck-factor",
    "coupling?limit=20",
]
ORG_METRICS = ["activity?granularity=month", "contributors?granularity=week", "languages"]


class MetreUser(FastHttpUser):
    wait_time = between(0.0, 0.05)

    def on_start(self) -> None:
        self.headers = {"Authorization": f"Bearer {TOKEN}"} if TOKEN else {}

    @task(15)
    def list_repos(self) -> None:
        self.client.get("/api/v1/repos", name="/api/v1/repos")

    @task(10)
    def repo(self) -> None:
        self.client.get(f"/api/v1/repos/{random.choice(REPOS)}", name="/api/v1/repos/{id}")

    @task(60)
    def metric(self) -> None:
        metric = random.choice(REPO_METRICS)
        name = f"/api/v1/repos/{{id}}/metrics/{metric.split('?')[0]}"
        self.client.get(f"/api/v1/repos/{random.choice(REPOS)}/metrics/{metric}", name=name)

    @task(10)
    def org_metric(self) -> None:
        metric = random.choice(ORG_METRICS)
        self.client.get(f"/api/v1/metrics/{metric}", name=f"/api/v1/metrics/{metric.split('?')[0]}")

    @task(5)
    def register(self) -> None:
        if not REGISTER:
            return
        url = random.choice(REGISTER)
        with self.client.post(
            "/api/v1/repos",
            json={"url": url},
            headers=self.headers,
            name="/api/v1/repos (register)",
            catch_response=True,
        ) as response:
            if response.status_code in (201, 409):
                response.success()


class HelloUser(FastHttpUser):
    wait_time = between(0.0, 0.05)

    @task
    def hello(self) -> None:
        self.client.get("/hello")
