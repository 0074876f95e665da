"""The gateway's web dashboard at ``/ui``: keys, spend, requests and provider status.

:mod:`proxy.ui.routes` serves the page and the login; :mod:`proxy.ui.session` is the signed session
cookie and CSRF token the admin API also accepts; :mod:`proxy.ui.doctor` each provider's credential
status. (Nothing is imported here: the admin API imports the session module, and the routes import
the admin API.)
"""
