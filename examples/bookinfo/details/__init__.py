"""The details service: book information (author, year, pages, ISBNs) by product id."""
