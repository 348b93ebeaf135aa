"""The offline side of Leakguard: batch jobs run by the CLI or by rq workers."""
