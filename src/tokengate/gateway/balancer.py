"""Round-robin over a Kong Upstream's targets, by weight.

    balancer = Balancer(service.targets)
    index = balancer.pick()        # the target for this request
    index = balancer.pick()        # the next one: after a connection failure, the retry's

nginx's smooth weighted round-robin: every pick adds each target's weight to its running score,
takes the highest, and takes the total off the winner. Weights 5, 1, 1 give a a b a c a a: each
target gets its share of every window of `total` picks, spread out rather than in runs, and
the order is the same on every run (Kong's ring is shuffled; the shares are what match).
"""

from __future__ import annotations

from collections.abc import Sequence

from tokengate.gateway.config import Target


class Balancer:
    def __init__(self, targets: Sequence[Target]) -> None:
        if not targets:
            raise ValueError("a balancer needs at least one target")
        self._weights = [target.weight for target in targets]
        self._total = sum(self._weights)
        self._scores = [0] * len(targets)

    def pick(self) -> int:
        """The index of the next target."""
        scores, weights = self._scores, self._weights
        if len(scores) == 1:
            return 0
        best = 0
        for index, weight in enumerate(weights):
            scores[index] += weight
            if scores[index] > scores[best]:
                best = index
        scores[best] -= self._total
        return best
