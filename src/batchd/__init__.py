"""batchd: a self-hostable job service that speaks the AWS Batch API and really runs the jobs."""

__version__ = "0.1.0"
