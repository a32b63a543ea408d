"""launch: how the jobs of a sweep run: job folders and their names, what every launcher does with a job's folder
(job_state), the job's torch threads, the SLURM and Ray launchers' shared parts, what a job knows of its sweep,
the sweep-end report callback, and Ctrl-C (interrupt). Imports track, report, loop, config, core; only cli.py
sits above it."""
