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
    log:
        "results/logs/figures/error_vs_horizon.log",
    conda:
        "../../envs/figures.yaml"
    script:
        "../../scripts/figure_error.py"


rule figure_rollout_strip:
    input:
        examples="results/eval/{env}/{model}/seed{seed}/rollouts.npz",
        style=STYLE,
    output:
        figure=report(
            "results/figures/{env}/{model}/seed{seed}/rollout_strip.png",
            caption="../report/rollout_strip.rst",
            category="Rollouts",
            subcategory="{env}",
            labels={"model": "{model}", "seed": "{seed}", "figure": "strip"},
        ),
    log:
        "results/logs/figures/{env}/{model}/seed{seed}/rollout_strip.log",
    conda:
        "../../envs/figures.yaml"
    script:
        "../../scripts/figure_rollout.py"
