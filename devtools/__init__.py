"""Development and demo tooling, apart from the product: the SMTP sink, the sample
data generator, `make run`'s first-run set-up and its process supervisor.

Nothing in the product (members, campaigns, config) imports from here.
"""
