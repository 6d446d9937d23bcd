rule evaluate:
    input:
        checkpoint="results/models/{env}/{model}/seed{seed}/checkpoint.pt",
        rollouts="results/rollouts/{env}/test.zarr",
        run_id="results/models/{env}/{model}/seed{seed}/mlflow_run_id",
        floor=floor_eval("metrics.parquet"),
        outcome="results/outcome/{env}/seed{seed}/outcome.pt",
    output:
        metrics="results/eval/{env}/{model}/seed{seed}/metrics.parquet",
        examples="results/eval/{env}/{model}/seed{seed}/rollouts.npz",
    log:
        "results/logs/evaluate/{env}/{model}/seed{seed}.log",
    benchmark:
        "results/benchmarks/evaluate/{env}/{model}/seed{seed}.tsv"
    conda:
        "../../envs/evaluate.yaml"
    threads: CFG.threads
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        evaluation=CFG.evaluation.model_dump(),
        mlflow=CFG.mlflow.model_dump(),
        device=CFG.device,
        verify=CFG.verify_stores,
        # Not read by the script: a changed model config makes this job out of date by its
        # params, so a retrain that failed once (its checkpoint deleted) runs again next time;
        # Snakemake does not recreate a missing intermediate file whose consumers look done.
        model=model_params,
    script:
        "../../scripts/evaluate.py"


rule aggregate:
    input:
        metrics=all_runs("results/eval/{env}/{model}/seed{seed}/metrics.parquet"),
    output:
        summary=report(
            "results/eval/summary.csv",
            caption="../report/summary.rst",
            category="Evaluation",
            labels={"table": "summary"},
        ),
    log:
        "results/logs/aggregate.log",
    conda:
        "../../envs/evaluate.yaml"
    script:
        "../../scripts/aggregate.py"


rule leaderboard:
    input:
        summary="results/eval/summary.csv",
    output:
        csv="results/eval/leaderboard.csv",
        markdown=report(
            "results/eval/leaderboard.md",
            caption="../report/leaderboard.rst",
            category="Evaluation",
            labels={"table": "leaderboard"},
        ),
    log:
        "results/logs/leaderboard.log",
    conda:
        "../../envs/evaluate.yaml"
    params:
        horizons=leaderboard_horizons(),
    script:
        "../../scripts/leaderboard.py"
