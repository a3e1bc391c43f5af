"""The executor's worker process: stateless and scaled out, it takes node-run commands from the
`NODE_RUNS` work queue, runs the nodes that need the outside world (llm, agent, transform in
`data_source` mode; every node when the orchestrator's inline runs are off) and publishes
their results.

main.py wires a worker up (`python -m services.executor.worker`); consumer.py takes a command,
runs its node under its timeout and publishes the result; http.py serves the probes and
metrics; runners/ runs the nodes, with llm/ (the providers' client) and tools/ (the agent's
tools). What the api process shares with workers (commands and results, the table of node
kinds, the control nodes' runners) lives beside this package, in services/executor/.
"""
