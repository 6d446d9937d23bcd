rule figure_error_vs_horizon:
    input:
        summary="results/eval/summary.csv",
        style=STYLE,
    output:
        figure=report(
            "results/figures/error_vs_horizon.png",
            caption="../report/error_vs_horizon.rst",
            category="Evaluation",
            labels={"figure": "error vs horizon"},
        ),
        es=report(
            "results/figures/es_vs_horizon.png",
            caption="../report/es_vs_horizon.rst",
            category="Evaluation",
            labels={"figure": "energy score vs horizon"},
        ),
    log:
        "results/logs/figures/error_vs_horizon.log",
    conda:
        "../../envs/figures.yaml"
    script:
        "../../scripts/figure_error.py"


rule figure_rollout_strip:
    input:
        examples="results/eval/{env}/{model}/seed{seed}/rollouts.npz",
        floor=floor_eval("rollouts.npz"),
        run_id="results/models/{env}/{model}/seed{seed}/mlflow_run_id",
        style=STYLE,
    output:
        figure=report(
            "results/figures/{env}/{model}/seed{seed}/rollout_strip.png",
            caption="../report/rollout_strip.rst",
            category="Rollouts",
            subcategory="{env}",
            labels={"model": "{model}", "seed": "{seed}", "figure": "strip"},
        ),
        gif=report(
            "results/figures/{env}/{model}/seed{seed}/test_rollout.gif",
            caption="../report/test_gif.rst",
            category="Rollouts",
            subcategory="{env}",
            labels={"model": "{model}", "seed": "{seed}", "figure": "test GIF"},
        ),
    log:
        "results/logs/figures/{env}/{model}/seed{seed}/rollout_strip.log",
    conda:
        "../../envs/figures.yaml"
    params:
        mlflow=CFG.mlflow.model_dump(),
    script:
        "../../scripts/figure_rollout.py"


rule figure_samples:
    input:
        examples="results/eval/{env}/{model}/seed{seed}/rollouts.npz",
        floor=floor_eval("rollouts.npz"),
        run_id="results/models/{env}/{model}/seed{seed}/mlflow_run_id",
        style=STYLE,
    output:
        figure=report(
            "results/figures/{env}/{model}/seed{seed}/samples.png",
            caption="../report/samples.rst",
            category="Rollouts",
            subcategory="{env}",
            labels={"model": "{model}", "seed": "{seed}", "figure": "samples"},
        ),
        gif=report(
            "results/figures/{env}/{model}/seed{seed}/samples.gif",
            caption="../report/samples.rst",
            category="Rollouts",
            subcategory="{env}",
            labels={"model": "{model}", "seed": "{seed}", "figure": "samples GIF"},
        ),
    log:
        "results/logs/figures/{env}/{model}/seed{seed}/samples.log",
    conda:
        "../../envs/figures.yaml"
    params:
        mlflow=CFG.mlflow.model_dump(),
    script:
        "../../scripts/figure_samples.py"


rule figure_training:
    input:
        logs=all_runs("results/models/{env}/{model}/seed{seed}/train_log.csv"),
        checkpoints=all_runs("results/models/{env}/{model}/seed{seed}/checkpoint.pt"),
        summary="results/eval/summary.csv",
        style=STYLE,
    output:
        curves=report(
            "results/figures/training_curves.png",
            caption="../report/training_curves.rst",
            category="Training",
            labels={"figure": "training curves"},
        ),
        compute=report(
            "results/figures/error_vs_compute.png",
            caption="../report/error_vs_compute.rst",
            category="Training",
            labels={"figure": "error vs compute"},
        ),
        params=report(
            "results/figures/params_vs_error.png",
            caption="../report/params_vs_error.rst",
            category="Evaluation",
            labels={"figure": "parameters vs error"},
        ),
    log:
        "results/logs/figures/training.log",
    conda:
        "../../envs/figures.yaml"
    script:
        "../../scripts/figure_training.py"


rule figure_assets:
    input:
        checkpoint="results/models/{env}/{model}/seed{seed}/checkpoint.pt",
        examples="results/eval/{env}/{model}/seed{seed}/rollouts.npz",
        style=STYLE,
    output:
        png=report(
            "results/figures/{env}/{model}/seed{seed}/assets.png",
            caption="../report/assets.rst",
            category="Asset models",
            subcategory="{env}",
            labels={"model": "{model}", "seed": "{seed}", "figure": "assets"},
        ),
        gif=report(
            "results/figures/{env}/{model}/seed{seed}/assets.gif",
            caption="../report/assets.rst",
            category="Asset models",
            subcategory="{env}",
            labels={"model": "{model}", "seed": "{seed}", "figure": "assets GIF"},
        ),
    log:
        "results/logs/figures/{env}/{model}/seed{seed}/assets.log",
    conda:
        "../../envs/figures.yaml"
    script:
        "../../scripts/figure_assets.py"
