"""Unexpected failures still reach the user as one clear line."""


def test_a_database_error_is_one_line_without_the_sql_or_its_data() -> None:
    from sqlalchemy.exc import IntegrityError

    from cli.main import describe

    orig = Exception(
        'duplicate key value violates unique constraint "creators_email"\n'
        "DETAIL:  Key (email)=(maya@example.org) already exists."
    )
    exc = IntegrityError(
        "INSERT INTO creators (email) VALUES (%(email)s)", {"email": "maya@example.org"}, orig
    )
    message = describe(exc)
    assert (
        message == 'database error: duplicate key value violates unique constraint "creators_email"'
    )
