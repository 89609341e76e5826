"""The web console: supervisors, managers, agents and auditors in a browser.
Server-rendered (FastAPI, Jinja2, htmx), served by `serve`; it asks and acts on
the bus as its own `gateway` identity naming the signed-in person, so the bus
permissions and the domain's role tables decide for it as for anyone."""
