"""What a run folder holds and who owns it: file names and records, the settings that
make an experiment, older records read in today's keys, labels.
"""
