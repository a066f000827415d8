"""Hard-negative batches: every mined row is a near neighbour of an anchor, no row twice, steps kept."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cliper.clip.hard_batches import EmbeddingMemory, hard_batches, nearest_neighbours


def test_nearest_neighbours_are_the_most_similar_other_rows():
    table = F.normalize(torch.randn(50, 8, generator=torch.Generator().manual_seed(0)), dim=-1)
    nb = nearest_neighbours(table, k=4, block=7)  # several blocks
    sim = table @ table.T
    sim.fill_diagonal_(-float("inf"))
    assert torch.equal(nb, sim.topk(4, dim=1).indices)
    assert not (nb == torch.arange(50)[:, None]).any()


def test_hard_batches_pair_anchors_with_their_neighbours():
    n, size, share = 100, 20, 0.5
    neighbours = torch.stack([(torch.arange(n) + d) % n for d in (1, 2, 3)], dim=1)  # i -> i+1..i+3
    batches = hard_batches(n, size, neighbours, share, torch.Generator().manual_seed(1))
    assert len(batches) == n // size  # an epoch costs as many steps as a random one
    n_hard = int(share * size)
    for batch in batches:
        assert len(set(batch.tolist())) == len(batch) <= size  # no item twice (a false negative)
        anchors = batch[: size - n_hard]
        mates = set(batch[size - n_hard :].tolist())
        pairs = {int(m) for a in anchors[:n_hard] for m in neighbours[a]} & mates
        assert mates and mates <= pairs | set(anchors.tolist())
    # every mined row is a neighbour of one of the batch's anchors
    close = sum(
        any(((m - a) % n) in (1, 2, 3) for a in b[: size - n_hard].tolist())
        for b in batches
        for m in b[size - n_hard :].tolist()
    )
    assert close == sum(len(b) - (size - n_hard) for b in batches)


def test_without_neighbours_or_share_the_batches_are_random_and_full():
    gen = torch.Generator().manual_seed(2)
    for neighbours, share in ((None, 0.5), (torch.zeros(30, 2, dtype=torch.long), 0.0)):
        batches = hard_batches(30, 8, neighbours, share, gen)
        assert [len(b) for b in batches] == [8, 8, 8]
        assert len(set(torch.cat(batches).tolist())) == 24


def test_memory_keeps_the_latest_normalised_embedding_per_item():
    memory = EmbeddingMemory(5)
    assert not memory.ready
    memory.update(torch.tensor([0, 3]), torch.tensor([[3.0, 4.0], [0.0, 2.0]]))
    memory.update(torch.tensor([3]), torch.tensor([[5.0, 0.0]]))
    assert memory.ready
    assert torch.allclose(memory.table[[0, 3]], torch.tensor([[0.6, 0.8], [1.0, 0.0]]))
    assert torch.equal(memory.table[1], torch.zeros(2))
