rule rollouts:
    output:
        store=directory("results/rollouts/{env}/{split}.zarr"),
    params:
        env=env_params,
        progress=CFG.progress,
    log:
        "results/logs/rollouts/{env}/{split}.log",
    benchmark:
        "results/benchmarks/rollouts/{env}/{split}.tsv"
    threads: max(env.workers for env in CFG.envs.values())
    resources:
        mem_mb=2000,
        runtime=60,
    conda:
        "../../envs/rollouts.yaml"
    script:
        "../../scripts/rollouts.py"
