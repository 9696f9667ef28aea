"""One tiny training run, started by the data-parallel tests as `torchrun ... tests/_ddp_train.py` (or imported
for the one-process reference). --die-on-rank R makes rank R fail after epoch 1, as a crashed GPU would."""
import argparse

from vpkit.config import paper_config


def tiny_config(data_root, epochs: int = 2):
    # 7 training images in batches of 4: the last global batch (3 images) splits 2/1 over two ranks, so the
    # test also checks the weighting of unequal shares. momentum: resuming must restore the optimizer.
    settings = {"epochs": epochs, "batch_size": 4, "eval_batch_size": 4, "limit": 7, "momentum": 0.9,
                "num_workers": 0, "patience": 10}
    return paper_config(4).with_overrides(
        {"model": {"name_or_path": "tiny-random"}, "dataset": {"root": str(data_root)}, "train": settings}
    )


def main() -> None:
    from vpkit import distributed
    from vpkit.train import train

    parser = argparse.ArgumentParser()
    parser.add_argument("data_root")
    parser.add_argument("run_dir")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--die-on-rank", type=int)
    args = parser.parse_args()

    def die(row):
        if row["epoch"] == 1 and distributed.world().rank == args.die_on_rank:
            raise SystemExit(f"rank {args.die_on_rank}: simulated crash after epoch 1")

    callbacks = [die] if args.die_on_rank is not None else []
    train(tiny_config(args.data_root, args.epochs), args.run_dir, resume=args.resume, callbacks=callbacks,
          progress=False)


if __name__ == "__main__":
    main()
