"""Rehearsal: the simulated people of a rehearsed sprint, going through the real service
functions: creators and approvers (`people`), the audience week by week (`audience`), and a
stream of plausible engagement for files and demos (`simulate`). Imports `campaigns`, `briefs`,
`review`, `engagement` and the plumbing.
"""
