{% snapshot customers_snapshot %}
{{ config(unique_key='id', strategy='check', check_cols=['name', 'region']) }}
select id, name, region from {{ ref('customers') }}
{% endsnapshot %}
