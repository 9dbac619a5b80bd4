"""Operator-level DAGs built from the Plan (``graph``), their checks (``checks``), contractions for
drawing (``views``), Graphviz rendering (``render``), the deployment plan's three files
(``files``), and the graph of what a real run recorded (``trace``: drawn == ran)."""

from helixlib.dag.checks import run_dag_checks
from helixlib.dag.files import FILES, write_dag_files
from helixlib.dag.graph import Dag, Edge, Node, build_dag

__all__ = ["FILES", "Dag", "Edge", "Node", "build_dag", "run_dag_checks", "write_dag_files"]
