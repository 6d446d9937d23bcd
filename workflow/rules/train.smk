rule mlflow_init:
    output:
        experiment="results/mlflow/experiment.json",
    log:
        "results/logs/mlflow_init.log",
    conda:
        "../../envs/train.yaml"
    params:
        mlflow=CFG.mlflow.model_dump(),
    script:
        "../../scripts/mlflow_init.py"


rule train:
    input:
        rollouts="results/rollouts/{env}/train.zarr",
        experiment="results/mlflow/experiment.json",
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
