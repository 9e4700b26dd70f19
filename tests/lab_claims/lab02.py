"""Lab 02 (KL, VAE): what the text says of its runs, checked on the executed solution.

The lab prints the numbers behind each figure; this module parses them (tests/lab_claims) and
asserts each sentence of the text that states them.
"""

from __future__ import annotations

import re

from nbformat import NotebookNode

from tests.lab_claims import printed

NUMBER = r"(-?[0-9]+(?:\.[0-9]+)?)"


def _last_epoch(text: str, title: str) -> tuple[float, float]:
    found = re.search(
        re.escape(title) + r", last epoch: squared error " + NUMBER + r", KL " + NUMBER, text
    )  # then "nats (KL at most N)"
    assert found, f"the solution never printed the last epoch of {title!r}"
    return float(found.group(1)), float(found.group(2))


def _values(text: str, label: str) -> list[float]:
    """The numbers printed after `label` on its line."""
    found = re.search(re.escape(label) + r"[: ]*([-0-9. ]+)", text)
    assert found, f"the solution never printed {label!r}"
    return [float(v) for v in found.group(1).split()]


def check(nb: NotebookNode) -> list[str]:
    text = printed(nb)
    claims = []

    # "the KL grows to about a hundred nats per image" (weight 1/784)
    _, kl_scaled = _last_epoch(text, "KL weight 1/784")
    assert 50 < kl_scaled < 250, kl_scaled
    claims.append("weight 1/784: the KL is about a hundred nats")

    # "In the first few dozen batches the KL jumped to several nats, then fell back to almost
    # zero (a tenth of a nat or less) while the reconstruction error sat on the dashed line"
    found = re.search(
        r"first epoch: KL up to "
        + NUMBER
        + r" nats at batch (\d+), then down to "
        + NUMBER
        + r" at batch (\d+), squared error then "
        + NUMBER
        + r" \(average image: "
        + NUMBER,
        text,
    )
    assert found, "the solution never printed the first epoch of the weight-1 run"
    peak, peak_at, trough, trough_at, error, average = (float(v) for v in found.groups())
    assert peak > 3 and peak_at < 100 and trough <= 0.1 and trough_at < 200, found.groups()
    assert abs(error - average) < 0.1 * average, (error, average)
    claims.append("weight 1: the KL jumps, then falls to ~0 with the error of the average image")

    # "the error of the second run is larger for every digit class, by about 40 % over the test
    # set"
    rows = re.findall(r"digit (\d): " + NUMBER + r" \| " + NUMBER, text)
    assert len(rows) == 10, rows
    assert all(float(full) > float(scaled) for _, scaled, full in rows), rows
    scaled, full = (
        float(v) for v in re.search(r"all digits: " + NUMBER + r" \| " + NUMBER, text).groups()
    )
    assert 1.25 < full / scaled < 1.6, (scaled, full)
    claims.append("weight 1 reconstructs every digit class worse than weight 1/784, ~40 %")

    # "The model ends with clearly better reconstructions than the second run, at about 10 nats
    # of KL per image"
    # "During warm-up the KL grows to hundreds of nats, far more than in the first run"
    most = {
        title: float(
            re.search(re.escape(title) + r", last epoch: .*\(KL at most " + NUMBER, text).group(1)
        )
        for title in ("KL weight 1/784", "KL annealing")
    }
    assert most["KL annealing"] > max(200, 1.5 * most["KL weight 1/784"]), most
    claims.append(
        "annealing: the KL of the warm-up reaches hundreds of nats, more than weight 1/784"
    )
    _, kl_annealed = _last_epoch(text, "KL annealing")
    assert 7 < kl_annealed < 14, kl_annealed
    annealed = float(re.search(r"annealed, all digits: " + NUMBER, text).group(1))
    assert annealed < 0.8 * full, (annealed, full)
    claims.append("annealing: about 10 nats of KL, clearly better reconstructions than weight 1")

    # the bar plot: "The annealed model uses every dimension, each carrying more than half a
    # nat. The run with weight 1 from the start has several dimensions with almost no KL (a
    # tenth of a nat or less) ... [Burda's count] counts more units active than there are
    # dimensions carrying a tenth of a nat"
    kl_full = _values(text, "KL weight 1 from the start: KL per dimension")
    kl_anneal = _values(text, "KL annealing: KL per dimension")
    assert len(kl_full) == len(kl_anneal) == 8
    assert min(kl_anneal) > 0.5, kl_anneal
    assert sum(v <= 0.1 for v in kl_full) >= 2, kl_full
    active = re.search(r"KL weight 1 from the start: activity [0-9. ]+, (\d+) active units", text)
    assert active and int(active.group(1)) > sum(v > 0.1 for v in kl_full), (active, kl_full)
    claims.append("KL per dimension: weight 1 has collapsed dimensions, the annealed run none")
    claims.append("Burda's count calls more units active than carry 0.1 nat (weight 1)")

    # "Going from the smallest beta to the largest, the rate falls and the distortion rises ...
    # At the largest beta the rate is a fraction of a nat and at most half of the units are
    # still active"
    sweep = re.findall(
        r"beta ([0-9.]+): rate " + NUMBER + r" nats, distortion " + NUMBER + r" nats, (\d+) active",
        text,
    )
    assert len(sweep) >= 4, sweep
    rates = [float(r) for _, r, _, _ in sweep]
    distortions = [float(d) for _, _, d, _ in sweep]
    actives = [int(a) for *_, a in sweep]
    assert rates == sorted(rates, reverse=True) and len(set(rates)) == len(rates), rates
    assert distortions == sorted(distortions) and len(set(distortions)) == len(distortions)
    assert rates[-1] < 1 and actives[-1] <= 4 and actives[0] == 8, (rates, actives)
    claims.append("beta sweep: rate falls, distortion rises, the largest beta has few active units")

    # the 2-D latent space: "Before training, every code sits in a speck near 0 with the digits
    # mixed. After five epochs the codes spread over the region the prior covers, and the digit
    # class already explains about half of their variance ... Five more epochs sharpen the
    # regions further (the share the digit explains keeps rising)"
    found = re.findall(
        r"epoch (\d+): variance of the codes ([0-9.e+-]+), share explained by the digit " + NUMBER,
        text,
    )
    assert [int(e) for e, _, _ in found] == [0, 5, 10], found
    (_, spread0, share0), (_, spread5, share5), (_, _, share10) = (
        (int(e), float(v), float(s)) for e, v, s in found
    )
    assert spread0 < 0.01 and share0 < 0.3, found
    assert 1 < spread5 < 3 and 0.4 < share5 < 0.65 and share10 > share5, found
    claims.append("2-D latent space: a speck at epoch 0, spread like the prior and sorted by digit")
    return claims
