"""TrainExpert on the expert tier: a team's labelled vectors in, a registered expert out.

``examples`` checks a request and gathers its vectors (from the request or the feature store),
``jobs`` queues and tracks jobs, ``worker`` fits them in a separate process with the fit function
it is given (the trainer's zoo, injected where the server is composed: this package never
imports the trainer), ``service`` ties the steps together for the admin servicer, and
``converters`` maps the messages.
"""
