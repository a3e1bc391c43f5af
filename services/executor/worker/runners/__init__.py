"""What a worker runs for the nodes that need the outside world: a model (llm.py, agent.py)
or a data source (data_source.py). Control nodes' runners are services/executor/control_nodes.py;
services/executor/node_kinds.py says which runner serves which node type."""
