"""The web side: app assembly, logins and sessions, streams, files, the A1111 and the studio routes. No torch."""
