# The reward and episode-end model of each env (every model's evaluation reads it), and agents
# trained in the models' dreams, scored in the real env beside the references (acting:).
rule outcome:
    input:
        train="results/rollouts/{env}/train.zarr",
        test="results/rollouts/{env}/test.zarr",
    output:
        model="results/outcome/{env}/seed{seed}/outcome.pt",
        scores="results/outcome/{env}/seed{seed}/scores.json",
    log:
        "results/logs/outcome/{env}/seed{seed}.log",
    benchmark:
        "results/benchmarks/outcome/{env}/seed{seed}.tsv"
    conda:
        "../../envs/train.yaml"
    threads: CFG.threads
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        outcome=CFG.outcome.model_dump(),
    script:
        "../../scripts/outcome.py"


rule agent:
    input:
        checkpoint="results/models/{env}/{model}/seed{seed}/checkpoint.pt",
        outcome="results/outcome/{env}/seed{seed}/outcome.pt",
        run_id="results/models/{env}/{model}/seed{seed}/mlflow_run_id",
        random="results/agents/{env}/reference-random/seed{seed}/scores.json",
        real="results/agents/{env}/reference-real/seed{seed}/scores.json",
    output:
        scores="results/agents/{env}/{model}/seed{seed}/scores.json",
        gif=report(
            "results/agents/{env}/{model}/seed{seed}/episode.gif",
            caption="../report/agent_episode.rst",
            category="Agents",
            subcategory="{env}",
            labels={"model": "{model}", "seed": "{seed}", "figure": "agent episode"},
        ),
    log:
        "results/logs/agents/{env}/{model}/seed{seed}.log",
    benchmark:
        "results/benchmarks/agents/{env}/{model}/seed{seed}.tsv"
    conda:
        "../../envs/agents.yaml"
    threads: CFG.threads
    resources:
        mem_mb=4000,
        runtime=240,
    params:
        ppo=CFG.acting.ppo.model_dump(),
        mlflow=CFG.mlflow.model_dump(),
        model=model_params,
    script:
        "../../scripts/agent.py"


rule agent_reference:
    input:
        rollouts="results/rollouts/{env}/test.zarr",
    output:
        scores="results/agents/{env}/reference-{reference}/seed{seed}/scores.json",
    log:
        "results/logs/agents/{env}/reference-{reference}/seed{seed}.log",
    benchmark:
        "results/benchmarks/agents/{env}/reference-{reference}/seed{seed}.tsv"
    wildcard_constraints:
        reference="random|real|scripted",
    conda:
        "../../envs/agents.yaml"
    threads: CFG.threads
    resources:
        mem_mb=4000,
        runtime=240,
    params:
        ppo=CFG.acting.ppo.model_dump(),
        env=env_params,
    script:
        "../../scripts/agent_reference.py"


rule agents_table:
    input:
        scores=agent_scores(),
        style=STYLE,
    output:
        csv="results/agents/agents.csv",
        markdown=report(
            "results/agents/agents.md",
            caption="../report/agents.rst",
            category="Agents",
            labels={"table": "agents"},
        ),
        figure=report(
            "results/figures/agents.png",
            caption="../report/agents.rst",
            category="Agents",
            labels={"figure": "agents"},
        ),
    log:
        "results/logs/agents/table.log",
    conda:
        "../../envs/figures.yaml"
    script:
        "../../scripts/agents_table.py"
