"""Run under torchrun by tests/test_train.py: one DDP training step through fusedsnn.train's own
distributed helpers, on this rank's share of a fixed global batch; rank 0 saves the gradients."""

import faulthandler
import os
import sys

import torch

from fusedsnn import train


def main(out_path: str) -> None:
    # A worker that hangs prints every thread's stack to stderr and exits (the test reads them).
    after = float(os.environ.get("DDP_WORKER_STACKS_AFTER_S", "0"))
    if after > 0:
        faulthandler.dump_traceback_later(after, exit=True)
    device = torch.device("cpu")
    rank, world = train.init_distributed(device)
    torch.manual_seed(0)
    model = train.build_model("dsnn", (12,), num_classes=3, pop_size=2, num_steps=6, hidden=10)
    net = train.wrap_distributed(model, device)
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(8, 12, generator=gen) * 3
    y = torch.randint(0, 3, (8,), generator=gen)
    part = train.shard(len(y), rank, world)
    loss_fn = train.make_loss("ce_rate", 3, 2)
    train.train_step(net, x[part], y[part], loss_fn)
    if rank == 0:
        torch.save({n: p.grad for n, p in model.named_parameters()}, out_path)
    torch.distributed.barrier()
    # Leave without the teardown: on this 2-core VM the workers hung now and then after main()
    # had returned (the stacks showed only <module>: destructors of the DDP wrapper or the gloo
    # group), with the results already written.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1])
