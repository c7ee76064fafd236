"""Face morphing: one enrolment photo made from two people, both of whom should then be verified against it."""
