"""The stages of `dopt -c scen.yaml`, in call order: plan, prepare, pretrain, train, search, results."""
