"""The teacher: synthetic data from any OpenAI-compatible model, cached, resumable, concurrent.

    with local_endpoint() as endpoint:                          # slm serve on the real model, or Endpoint(url, model)
        answer = Teacher(endpoint, cache="cache.sqlite").ask(Request(messages=[{"role": "user", "content": "Hi"}]))
    report = run_job(load_job("job.yaml"), endpoint)             # a prompt program: templates x variables -> JSONL

Recipes describe prompts and parse answers; they never open HTTP connections themselves. The parts:
  client   Endpoint, Request, Answer, Teacher (concurrency, retries with back-off, the request-keyed cache)
  program  Job, Template, load_job, run_job: prompt programs with parsing and new-seed retries
  output   JsonlOutput: append-only JSONL with a cursor
  local    local_endpoint(): slm serve on a free loopback port
  filters  NgramIndex (n-gram decontamination), near_duplicates (MinHash, datasketch)
"""
from slm.teach.client import Answer, Cache, Endpoint, Request, RequestRefused, Stats, Teacher
from slm.teach.filters import NgramIndex, near_duplicates, near_duplicates_removed, ngrams
from slm.teach.local import local_endpoint
from slm.teach.output import JsonlOutput
from slm.teach.program import Job, JobReport, ParseError, Template, load_job, run_job

__all__ = ["Answer", "Cache", "Endpoint", "Job", "JobReport", "JsonlOutput", "NgramIndex", "ParseError", "Request",
           "RequestRefused", "Stats", "Teacher", "Template", "load_job", "local_endpoint", "near_duplicates",
           "near_duplicates_removed", "ngrams", "run_job"]
