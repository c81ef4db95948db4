"""KEDA's scaling rule for the processors (the driver bench/scaleout.py runs, and the rule the
processors' ScaledObject declares: tests/deploy/test_manifests.py checks the two agree)."""

from __future__ import annotations

import math


def desired_replicas(lag: int, threshold: int, partitions: int, max_replicas: int) -> int:
    """KEDA's Kafka scaler with the HPA's AverageValue target: ceil(lag / threshold), at least
    1 (minReplicaCount), at most the partitions (allowIdleConsumers false) and maxReplicaCount."""
    return max(1, min(math.ceil(lag / threshold), partitions, max_replicas))
