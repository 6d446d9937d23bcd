rule rollouts:
    output:
        store=directory("results/rollouts/{env}/{split}.zarr"),
    log:
        "results/logs/rollouts/{env}/{split}.log",
    benchmark:
        "results/benchmarks/rollouts/{env}/{split}.tsv"
    conda:
        "../../envs/rollouts.yaml"
    threads: max(env.workers for env in CFG.envs.values())
    resources:
        mem_mb=2000,
        runtime=60,
    params:
        env=env_params,
        progress=CFG.progress,
    script:
        "../../scripts/rollouts.py"
