-- Seeds of the SQL fuzz test (one statement a line): statements of the gateway's and the
-- policies' tests, and Snowflake-style ones. The fuzz mutates them; every mutation must be
-- parsed, refused or rewritten and printed without a panic or a stack overflow.
SELECT * FROM customers WHERE id = $1
SELECT email, ssn FROM customers c JOIN orders o ON o.customer_id = c.id WHERE c.region = 'eu'
SELECT region, count(*) FROM customers GROUP BY region HAVING count(*) > 1 ORDER BY 2 DESC LIMIT 10
WITH recent AS (SELECT * FROM orders WHERE id > 10) SELECT c.email FROM customers c, recent r WHERE r.customer_id = c.id
SELECT email FROM customers UNION ALL SELECT email FROM customer_view EXCEPT SELECT 'x'
SELECT (SELECT max(id) FROM orders WHERE orders.customer_id = customers.id) FROM customers
SELECT row_number() OVER (PARTITION BY region ORDER BY id) AS n, email FROM customers
SELECT CASE WHEN ssn LIKE '1%' THEN 'a' ELSE 'b' END, coalesce(email, '') || '@' FROM customers
SELECT id::TEXT, CAST(id AS BIGINT[]), ARRAY[1, 2, 3][1] FROM customers
INSERT INTO customers (id, email, ssn, region) VALUES (1, 'a@b.c', '123', 'eu'), (2, NULL, NULL, 'us')
INSERT INTO orders SELECT id, id FROM customers WHERE region = 'eu'
UPDATE customers SET region = 'us' WHERE id IN (SELECT customer_id FROM orders) RETURNING id
DELETE FROM customers WHERE email IS NOT NULL AND id BETWEEN 1 AND 10
CREATE TABLE summary AS SELECT region, count(*) AS n FROM customers GROUP BY region
CREATE TABLE t (a INT, b VARCHAR, c DECIMAL(10, 2), d INT[])
EXPLAIN SELECT * FROM customers
SELECT * FROM generate_series(1, 10) AS g(x) WHERE x % 2 = 0
SELECT IFF(x IS NULL, 0, x) FROM (SELECT NULL AS x)
SELECT NVL(x, -1) FROM (VALUES (1), (NULL)) AS t(x) ORDER BY 1
SELECT DATEADD(day, 1, '2024-01-01'::DATE), DATEDIFF(month, '2024-01-01', '2024-03-01')
SELECT v:a.b::STRING FROM (SELECT PARSE_JSON('{"a": {"b": 1}}') AS v)
SELECT region FROM customers QUALIFY row_number() OVER (PARTITION BY region ORDER BY id) = 1
SELECT LISTAGG(email, ',') WITHIN GROUP (ORDER BY email) FROM customers
SET search_path = main; SHOW search_path; BEGIN; COMMIT
SELECT current_setting('search_path'), version()
COPY customers (id, email) FROM STDIN
