# No rule creates the MLflow store or experiment: the first job that logs does, under a file lock
# (forward_models.tracking.open_store). As a file output it would make Snakemake retrain every
# model after the store was lost or its creation failed once.
rule train:
    input:
        rollouts="results/rollouts/{env}/train.zarr",
    output:
        checkpoint="results/models/{env}/{model}/seed{seed}/checkpoint.pt",
        config="results/models/{env}/{model}/seed{seed}/config.yaml",
        train_log="results/models/{env}/{model}/seed{seed}/train_log.csv",
        run_id="results/models/{env}/{model}/seed{seed}/mlflow_run_id",
    log:
        "results/logs/train/{env}/{model}/seed{seed}.log",
    benchmark:
        "results/benchmarks/train/{env}/{model}/seed{seed}.tsv"
    conda:
        "../../envs/train.yaml"
    threads: CFG.threads
    resources:
        mem_mb=4000,
        runtime=120,
    params:
        model=model_params,
        mlflow=CFG.mlflow.model_dump(),
        run_name=run_name,
        device=CFG.device,
        progress=CFG.progress,
        horizon=CFG.evaluation.horizon,
        verify=CFG.verify_stores,
    script:
        "../../scripts/train.py"
