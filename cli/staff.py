"""`rally staff`: the staff console's sign-in links."""

import typer

from cli.common import console, store
from store.db import transaction
from store.types import utcnow

app = typer.Typer(help="The staff console: a staff member's sign-in link.", no_args_is_help=True)


@app.command("link")
def link_command(
    email: str = typer.Argument(
        ..., help="The staff member's email, as the campaign file lists it."
    ),
    print_link: bool = typer.Option(
        False, "--print", help="Print the link here instead of emailing it."
    ),
) -> None:
    """Email a staff member a sign-in link to the staff console (one use, 72 hours), or print
    it. Only people listed under `staff:` in an applied campaign file get one."""
    from tasks.staff.access import staff_sign_in

    settings, engine = store()
    with transaction(engine) as session:
        link = staff_sign_in(
            session,
            email,
            public_url=settings.public_url,
            now=utcnow(),
            send=not print_link,
            actor=settings.actor,
        )
    if print_link:
        console.print(f"Sign-in link for {email} (one use, 72 hours):", markup=False)
        print(link)
        return
    console.print(
        f"Sign-in link emailed to {email} (one use, 72 hours): it goes out with the next "
        "delivery ('rally serve' sends mail every minute).",
        markup=False,
    )
