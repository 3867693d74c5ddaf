"""Notifications back to people and CI (issue 14 point 7).

``flux``: Flux's ``notification.toolkit.fluxcd.io/v1beta3`` ``Provider`` and ``Alert`` as users
write them, and the events gitsail derives from the Ready condition of Flux objects;
``providers``: the HTTP request each provider type sends (generic, generic-hmac, slack, msteams,
github and gitlab commit status); ``argo``: Argo CD's ``argocd-notifications-cm`` (webhook
services, templates, the built-in triggers) and the subscriptions on Applications;
``delivery``: the bounded asynchronous queue that sends them with retries.

Everything here is pure or talks HTTP only; the controller (``gitsail.controller.notifications``)
watches the objects and feeds it.
"""
