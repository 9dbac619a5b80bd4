"""The estimator held against measurement: microbenchmarks inside concurrently running ranks
(``microbench``), fits and the cluster preset they make (``calibrate``), held-out configurations
predicted and measured (``validate``), and FLOPs checked by an independent counter
(``flop_oracle``)."""
