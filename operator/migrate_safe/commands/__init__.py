"""The command handlers. Each takes its typed options (built by `cli.py` from the command
line: no handler sees argparse), the settings, the reporter, and the run's typed report, which
it fills as its phases complete, so a failure midway still reports what was done before it.

    pipeline     apply, run and the rehearsal: preflight → backup → apply → postflight
    phases       each of those phases, on one connection holding the ledger's lock
    phase_jobs   preflight, backup, restore and postflight alone, as the operator's Jobs run them
    rollback     down migrations, newest first, after linting them
    reading      status, plan and fingerprint: they change nothing
    adopt        baseline, force and repair: the ledger written without running migrations
    ci           verify and lint, the gates of a pull request
    wait         an application's init container waits for a version
    demo         the examples on a throwaway PostgreSQL
    common       what every handler does first: load the source, describe the database
    text         the human-readable form of the typed results
"""
