"""Training one job: its state (state.py), the steps (loop.py), what runs at each epoch's end
(callbacks.py), the mean-field predictions beside it (predictions.py) and the job (job.py)."""
